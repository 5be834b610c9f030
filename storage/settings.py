"""Storage settings read from the environment once per process, as one explicit object.

Functions take a ``StorageSettings`` where tests need to vary it; everything else calls
``get_settings()``, which reads the environment on first use. ``reload_settings()`` is for tests
and for the CLI after it has changed the environment (e.g. pointing at an embedded moto server).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from storage.buckets import resolve_bucket_names, spec
from storage.errors import ConfigurationError

DEFAULT_REGION = "eu-west-1"
DEFAULT_LOGO_CDN_DOMAIN = "static-logos.notify.tools"
SSE_ALGORITHMS = ("AES256", "aws:kms")
# A KMS key ARN: IAM grants on keys need the ARN (an alias or a bare key id cannot be granted).
_KMS_KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+")


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
    logo_cdn_domain: str = DEFAULT_LOGO_CDN_DOMAIN
    # Server-side encryption of every write: AES256 (S3-managed keys) or aws:kms with this key.
    sse: str = "AES256"
    kms_key_id: str | None = None
    noncurrent_version_days: int = 90
    connect_timeout: int = 5
    read_timeout: int = 30
    max_attempts: int = 5
    max_pool_connections: int = 20
    extra: dict[str, str] = field(default_factory=dict)

    def bucket(self, purpose: str) -> str:
        """The bucket name for a purpose (raises InvalidInput for an unknown purpose)."""
        spec(purpose)
        return self.bucket_names[purpose]

    def sse_params(self) -> dict[str, Any]:
        """The encryption parameters of every PutObject, CopyObject and CreateMultipartUpload."""
        if self.sse == "aws:kms":
            return {
                "ServerSideEncryption": "aws:kms",
                "SSEKMSKeyId": self.kms_key_id,
                # S3 Bucket Keys: far fewer KMS requests (and costs) for the same protection.
                "BucketKeyEnabled": True,
            }
        return {"ServerSideEncryption": "AES256"}

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
        sse, kms_key_id = _encryption(environ)
        return cls(
            environment=environment,
            region=region,
            endpoint_url=(environ.get("S3_ENDPOINT_URL") or "").strip() or None,
            bucket_names=resolve_bucket_names(environ, environment),
            logo_cdn_domain=(environ.get("LOGO_CDN_DOMAIN") or DEFAULT_LOGO_CDN_DOMAIN).strip(),
            sse=sse,
            kms_key_id=kms_key_id,
            noncurrent_version_days=env_int(
                environ, "NOTIFY_NONCURRENT_VERSION_DAYS", 90, minimum=1
            ),
            connect_timeout=env_int(environ, "NOTIFY_S3_CONNECT_TIMEOUT", 5, minimum=1),
            read_timeout=env_int(environ, "NOTIFY_S3_READ_TIMEOUT", 30, minimum=1),
            max_attempts=env_int(environ, "NOTIFY_S3_MAX_ATTEMPTS", 5, minimum=1),
            max_pool_connections=env_int(environ, "NOTIFY_S3_MAX_POOL", 20, minimum=1),
        )


def _encryption(environ: Mapping[str, str]) -> tuple[str, str | None]:
    """NOTIFY_S3_SSE and NOTIFY_S3_KMS_KEY_ID, checked together."""
    sse = (environ.get("NOTIFY_S3_SSE") or "AES256").strip()
    key_id = (environ.get("NOTIFY_S3_KMS_KEY_ID") or "").strip() or None
    if sse not in SSE_ALGORITHMS:
        raise ConfigurationError(
            f"NOTIFY_S3_SSE must be one of {', '.join(SSE_ALGORITHMS)}, got {sse!r}."
        )
    if sse == "aws:kms":
        if not key_id:
            raise ConfigurationError(
                "NOTIFY_S3_SSE=aws:kms needs NOTIFY_S3_KMS_KEY_ID, the ARN of the KMS key "
                "(arn:aws:kms:REGION:ACCOUNT:key/KEY-ID)."
            )
        if not _KMS_KEY_ARN.fullmatch(key_id):
            raise ConfigurationError(
                "NOTIFY_S3_KMS_KEY_ID must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/"
                "KEY-ID), not an alias or a bare key id: the IAM policy grants that key only."
            )
    elif key_id:
        raise ConfigurationError(
            "NOTIFY_S3_KMS_KEY_ID is set but NOTIFY_S3_SSE is not aws:kms: set "
            "NOTIFY_S3_SSE=aws:kms to use the key, or unset NOTIFY_S3_KMS_KEY_ID."
        )
    return sse, key_id


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
