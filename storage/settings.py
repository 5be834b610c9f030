"""Storage settings read from the environment once per process, as one explicit object.

Functions take a ``StorageSettings`` where tests need to vary it; everything else calls
``get_settings()``, which reads the environment on first use. ``reload_settings()`` is for tests
and for the CLI after it has changed the environment (e.g. pointing at an embedded moto server).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from storage.buckets import resolve_bucket_names, spec
from storage.errors import ConfigurationError

DEFAULT_REGION = "eu-west-1"


def env_int(environ: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    """An integer env var, or a startup error naming it."""
    raw = (environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}.") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value}.")
    return value


@dataclass(frozen=True)
class StorageSettings:
    environment: str
    region: str
    endpoint_url: str | None
    bucket_names: dict[str, str]
    logo_cdn_domain: str = "static-logos.notify.tools"
    connect_timeout: int = 5
    read_timeout: int = 30
    max_attempts: int = 5
    max_pool_connections: int = 20
    extra: dict[str, str] = field(default_factory=dict)

    def bucket(self, purpose: str) -> str:
        """The bucket name for a purpose (raises InvalidInput for an unknown purpose)."""
        spec(purpose)
        return self.bucket_names[purpose]

    def purpose_of(self, bucket_name: str) -> str | None:
        for purpose, name in self.bucket_names.items():
            if name == bucket_name:
                return purpose
        return None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StorageSettings:
        environ = os.environ if environ is None else environ
        environment = (environ.get("NOTIFY_ENVIRONMENT") or "local").strip().lower()
        if not environment.replace("-", "").replace("_", "").isalnum():
            raise ConfigurationError(f"NOTIFY_ENVIRONMENT={environment!r} is not a valid name.")
        region = (environ.get("AWS_REGION") or DEFAULT_REGION).strip()
        return cls(
            environment=environment,
            region=region,
            endpoint_url=(environ.get("S3_ENDPOINT_URL") or "").strip() or None,
            bucket_names=resolve_bucket_names(environ, environment),
            logo_cdn_domain=(environ.get("LOGO_CDN_DOMAIN") or "static-logos.notify.tools").strip(),
            connect_timeout=env_int(environ, "NOTIFY_S3_CONNECT_TIMEOUT", 5, minimum=1),
            read_timeout=env_int(environ, "NOTIFY_S3_READ_TIMEOUT", 30, minimum=1),
            max_attempts=env_int(environ, "NOTIFY_S3_MAX_ATTEMPTS", 5, minimum=1),
            max_pool_connections=env_int(environ, "NOTIFY_S3_MAX_POOL", 20, minimum=1),
        )


_settings: StorageSettings | None = None


def get_settings() -> StorageSettings:
    global _settings
    if _settings is None:
        _settings = StorageSettings.from_env()
    return _settings


def reload_settings() -> StorageSettings:
    """Re-read the environment (tests, and the CLI after it set S3_ENDPOINT_URL)."""
    global _settings
    _settings = None
    return get_settings()
