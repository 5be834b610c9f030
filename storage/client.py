"""One S3 client per process, made on first use after fork.

boto3 clients are thread-safe but must not cross a fork (their connection pools would be
shared by parent and children), so the client is keyed by pid: a prefork child that inherits
the parent's client makes its own on first use. It is keyed by the settings object too, so
``storage.settings.reload_settings()`` gives the next caller a client for the new settings.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config

from storage.settings import StorageSettings, get_settings

_lock = threading.Lock()
_client: Any = None
_client_pid: int | None = None
_client_settings: StorageSettings | None = None
_client_hooks: list[Callable[[Any], None]] = []


def add_client_hook(hook: Callable[[Any], None]) -> None:
    """Call ``hook(client)`` on every client made from now on (metrics and tracing register
    botocore event handlers this way, so this layer imports nothing above it)."""
    if hook not in _client_hooks:
        _client_hooks.append(hook)


def client_config(settings: StorageSettings) -> Config:
    """The botocore config every client uses; public so tests can assert on it."""
    options: dict[str, Any] = {
        "region_name": settings.region,
        # total_max_attempts counts the first try (botocore's max_attempts counts retries only).
        "retries": {"mode": "standard", "total_max_attempts": settings.max_attempts},
        "connect_timeout": settings.connect_timeout,
        "read_timeout": settings.read_timeout,
        "max_pool_connections": settings.max_pool_connections,
    }
    if settings.endpoint_url:
        # S3-compatible servers (moto, MinIO) do not all speak the newer default checksums.
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
        options["s3"] = {"addressing_style": "path"}
    return Config(**options)


def make_client(settings: StorageSettings | None = None) -> Any:
    """A new client (credentials from boto3's default chain; never passed or logged here)."""
    settings = settings or get_settings()
    session = boto3.session.Session()
    client = session.client(
        "s3", endpoint_url=settings.endpoint_url, config=client_config(settings)
    )
    for hook in _client_hooks:
        hook(client)
    return client


def get_client() -> Any:
    """The process's shared S3 client."""
    global _client, _client_pid, _client_settings
    pid = os.getpid()
    settings = get_settings()
    if _client is None or _client_pid != pid or _client_settings is not settings:
        with _lock:
            if _client is None or _client_pid != pid or _client_settings is not settings:
                _client = make_client(settings)
                _client_pid = pid
                _client_settings = settings
    return _client


def reset_client() -> None:
    global _client, _client_pid, _client_settings
    with _lock:
        _client = None
        _client_pid = None
        _client_settings = None
