"""Shared helpers and fixtures for the letters tests (fixtures registered in tests/conftest.py).

* ``letters_s3``: the module's in-process moto with the letter buckets emptied;

* ``put_letter`` uploads a transient letter with the web app's metadata (including a
  recipient and file name that must never show up in results or logs);
* ``RequestLog`` counts the HTTP requests a botocore client makes (one per attempt);
* ``FaultyClient`` wraps a client and runs hooks before or after chosen operations, to inject
  races (a source replaced between HEAD and COPY) and crashes (between copy and delete).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest

from storage.buckets import SSE
from storage.keys import transient_letter_key
from storage.settings import get_settings
from tests.s3_fixtures import empty_buckets

RECIPIENT = "Ms Secret Recipient\n1 Hidden Street\nSW1A 1AA"
FILENAME = "private-letter-name.pdf"
SECRETS = ("Secret", "Hidden", "SW1A", "private-letter-name", quote(RECIPIENT)[:20])

REFERENCE = "ABC123"
POSTAGE = "second"
CREATED_AT = "2024-07-15T10:00:00Z"
DEST_KEY = "2024-07-15/NOTIFY.ABC123.D.2.C.20240715100000.PDF"


def transient_bucket() -> str:
    return get_settings().bucket("transient-letters")


def letters_bucket() -> str:
    return get_settings().bucket("letters-pdf")


def backup_bucket() -> str:
    return get_settings().bucket("letter-backups")


def pdf_body(size: int = 2048, seed: str = "a") -> bytes:
    head = f"%PDF-1.7 {seed}\n".encode()
    return (head + b"x" * size)[:size]


@dataclass
class Letter:
    service_id: str
    upload_id: str
    key: str
    etag: str
    body: bytes
    metadata: dict[str, str]

    def args(self, **overrides: Any) -> dict[str, Any]:
        """``move_letter`` keyword arguments for this letter."""
        kwargs: dict[str, Any] = {
            "service_id": self.service_id,
            "upload_id": self.upload_id,
            "reference": REFERENCE,
            "postage": POSTAGE,
            "created_at": CREATED_AT,
        }
        kwargs.update(overrides)
        return kwargs


def letter_metadata(status: str | None = "valid", **extra: str) -> dict[str, str]:
    metadata = {
        "page_count": "2",
        "filename": quote(FILENAME),
        "recipient": quote(RECIPIENT),
        "message": "",
        "invalid_pages": "[]",
    }
    if status is not None:
        metadata["status"] = status
    metadata.update(extra)
    return metadata


def put_letter(
    client: Any,
    *,
    service_id: str | None = None,
    upload_id: str | None = None,
    body: bytes | None = None,
    status: str | None = "valid",
    metadata: dict[str, str] | None = None,
    tags: str | None = "letter-kind=precompiled",
) -> Letter:
    service_id = service_id or str(uuid.uuid4())
    upload_id = upload_id or str(uuid.uuid4())
    body = pdf_body() if body is None else body
    metadata = letter_metadata(status) if metadata is None else metadata
    key = transient_letter_key(service_id, upload_id)
    params: dict[str, Any] = {
        "Bucket": transient_bucket(),
        "Key": key,
        "Body": body,
        "Metadata": metadata,
        "ContentType": "application/pdf",
        "ServerSideEncryption": SSE,
    }
    if tags:
        params["Tagging"] = tags
    etag = client.put_object(**params)["ETag"]
    return Letter(service_id, upload_id, key, etag, body, metadata)


def read(client: Any, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def exists(client: Any, bucket: str, key: str) -> bool:
    return bool(client.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount"))


def keys_in(client: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


@dataclass
class RequestLog:
    """Operation names of every HTTP request a client sends (retries included)."""

    operations: list[str] = field(default_factory=list)

    def attach(self, client: Any) -> RequestLog:
        client.meta.events.register("request-created.s3", self._record)
        return self

    def _record(self, operation_name: str | None = None, **_: Any) -> None:
        self.operations.append(operation_name or "?")

    def clear(self) -> None:
        self.operations.clear()


Hook = Callable[[dict[str, Any]], None]


class FaultyClient:
    """A boto3 client whose chosen operations run a hook first (``before``) or after.

    A hook receives the call's keyword arguments; it may raise to simulate a crash. Each hook
    runs once unless ``repeat`` is set.
    """

    def __init__(
        self,
        client: Any,
        *,
        before: dict[str, Hook] | None = None,
        after: dict[str, Hook] | None = None,
        repeat: bool = False,
    ) -> None:
        self._client = client
        self._before = dict(before or {})
        self._after = dict(after or {})
        self._repeat = repeat
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            hook = self._before.get(name) if self._repeat else self._before.pop(name, None)
            if hook:
                hook(kwargs)
            try:
                return attr(*args, **kwargs)
            finally:  # after the call, whether it answered or raised (a 404 HEAD, say)
                hook = self._after.get(name) if self._repeat else self._after.pop(name, None)
                if hook:
                    hook(kwargs)

        return call


def empty_letter_buckets(client: Any) -> None:
    empty_buckets(client, (transient_bucket(), letters_bucket(), backup_bucket()))


@pytest.fixture
def letters_s3(module_s3: Any) -> Any:
    """The module's in-process moto (``tests.s3_fixtures``) with empty letter buckets."""
    empty_letter_buckets(module_s3)
    return module_s3


@contextmanager
def recorded(client: Any) -> Iterator[RequestLog]:
    """Record the client's requests for the duration of the block."""
    log = RequestLog()
    client.meta.events.register("request-created.s3", log._record)
    try:
        yield log
    finally:
        client.meta.events.unregister("request-created.s3", log._record)


class Killed(BaseException):
    """Stands for the process dying at a line (not an Exception: nothing may catch it)."""


def age_in_moto(bucket: str, key: str, hours: float) -> None:
    """Make an object look ``hours`` older (in-process moto only: reaches into its backend)."""
    from datetime import timedelta

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    fake = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets[bucket].keys[key]
    fake.last_modified = fake.last_modified - timedelta(hours=hours)
