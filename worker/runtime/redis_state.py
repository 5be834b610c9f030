"""The project's own Redis state: a client per process and the ``notify:`` key namespace.

Every key this project writes is built by ``key()``, so it starts with ``notify:``; keys that
belong to a finished job get an expiry (``NOTIFY_STATE_TTL_SECONDS``, default 7 days).
"""

from __future__ import annotations

import os
import threading

import redis

from worker.runtime.settings import get_worker_settings

PREFIX = "notify:"

_lock = threading.Lock()
_client: redis.Redis | None = None
_client_pid: int | None = None


def key(*parts: str) -> str:
    return PREFIX + ":".join(parts)


def make_redis(url: str | None = None) -> redis.Redis:
    return redis.Redis.from_url(
        url or get_worker_settings().redis_url,
        decode_responses=True,
        socket_timeout=30,
        socket_connect_timeout=10,
        health_check_interval=25,
        retry_on_timeout=True,
    )


def get_redis() -> redis.Redis:
    """The process's Redis client for ``notify:`` state (made again after a fork)."""
    global _client, _client_pid
    pid = os.getpid()
    if _client is None or _client_pid != pid:
        with _lock:
            if _client is None or _client_pid != pid:
                _client = make_redis()
                _client_pid = pid
    return _client


def reset_redis() -> None:
    global _client, _client_pid
    with _lock:
        _client = None
        _client_pid = None
