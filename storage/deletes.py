"""Batched deletes: up to 1,000 keys per DeleteObjects call, per-key errors collected."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from storage.client import get_client
from storage.errors import s3_errors

MAX_KEYS_PER_DELETE = 1000


@dataclass
class DeleteResult:
    deleted: list[str] = field(default_factory=list)
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # key, code, message


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def delete_keys(
    bucket: str, keys: Iterable[str], *, batch_size: int = MAX_KEYS_PER_DELETE, client: Any = None
) -> DeleteResult:
    """Delete keys in quiet DeleteObjects calls; a key that fails does not stop the rest."""
    if not 1 <= batch_size <= MAX_KEYS_PER_DELETE:
        raise ValueError(f"batch_size must be 1..{MAX_KEYS_PER_DELETE}")
    client = client or get_client()
    result = DeleteResult()
    for chunk in _chunks(keys, batch_size):
        with s3_errors(bucket):
            response = client.delete_objects(
                Bucket=bucket,
                Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
            )
        failed = {e["Key"] for e in response.get("Errors", [])}
        result.errors.extend(
            (e["Key"], e.get("Code", ""), e.get("Message", "")) for e in response.get("Errors", [])
        )
        result.deleted.extend(k for k in chunk if k not in failed)
    return result


def delete_if_unchanged(bucket: str, key: str, etag: str, *, client: Any = None) -> None:
    """DeleteObject only while the object still has ``etag`` (S3 and moto honour IfMatch)."""
    client = client or get_client()
    with s3_errors(bucket, key):
        client.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
