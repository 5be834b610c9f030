"""The project's own Redis state: a client per process and the ``notify:`` key namespace.

Every key this project writes is built by ``key()``, so it starts with ``notify:``; keys that
belong to a finished job get an expiry (``NOTIFY_STATE_TTL_SECONDS``, default 7 days).

The state lives on ``NOTIFY_STATE_REDIS_URL`` (default ``REDIS_URL``), which may be another
server than the broker: ``get_redis()`` is for ``notify:`` keys only, ``get_broker_redis()`` for
reading the broker itself (queue lengths, its ``run_id``).
"""

from __future__ import annotations

import os
import threading

import redis

from worker.runtime.redis_urls import make_client
from worker.runtime.settings import get_worker_settings

PREFIX = "notify:"

_lock = threading.Lock()
_client: redis.Redis | None = None
_client_pid: int | None = None
_broker: redis.Redis | None = None
_broker_pid: int | None = None


def key(*parts: str) -> str:
    return PREFIX + ":".join(parts)


def make_redis(url: str | None = None, *, variable: str = "NOTIFY_STATE_REDIS_URL") -> redis.Redis:
    """A client (decoded strings) for ``url``, by default the state store; any URL form."""
    settings = get_worker_settings()
    return make_client(url or settings.state_redis_url, settings, variable=variable)


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


def get_broker_redis() -> redis.Redis:
    """The process's client for the broker's Redis (``REDIS_URL``), for reading it only."""
    global _broker, _broker_pid
    pid = os.getpid()
    if _broker is None or _broker_pid != pid:
        with _lock:
            if _broker is None or _broker_pid != pid:
                _broker = make_redis(get_worker_settings().redis_url, variable="REDIS_URL")
                _broker_pid = pid
    return _broker


def reset_redis() -> None:
    global _client, _client_pid, _broker, _broker_pid
    with _lock:
        _client = None
        _client_pid = None
        _broker = None
        _broker_pid = None
