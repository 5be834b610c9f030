"""Single-object operations: read metadata, stream a body, write, rewrite metadata.

Reads never load a whole object: ``open_stream`` hands back the response body and
``iter_lines`` yields lines from fixed-size chunks. Every write sets the configured server-side
encryption (``StorageSettings.sse_params``: AES256, or SSE-KMS with its key and Bucket Keys).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO
from urllib.parse import urlencode

from storage.client import get_client
from storage.errors import S3NotFound, s3_errors
from storage.settings import get_settings

CHUNK_SIZE = 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    etag: str
    size: int
    last_modified: datetime
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    server_side_encryption: str | None = None

    @classmethod
    def from_response(cls, bucket: str, key: str, response: Mapping[str, Any]) -> ObjectInfo:
        return cls(
            bucket=bucket,
            key=key,
            etag=response["ETag"],
            size=int(response["ContentLength"]),
            last_modified=response["LastModified"],
            metadata=dict(response.get("Metadata") or {}),
            content_type=response.get("ContentType"),
            server_side_encryption=response.get("ServerSideEncryption"),
        )


def head(bucket: str, key: str, *, client: Any = None) -> ObjectInfo:
    """HeadObject; raises ``S3NotFound`` when the key does not exist."""
    client = client or get_client()
    with s3_errors(bucket, key):
        response = client.head_object(Bucket=bucket, Key=key)
    return ObjectInfo.from_response(bucket, key, response)


def head_or_none(bucket: str, key: str, *, client: Any = None) -> ObjectInfo | None:
    try:
        return head(bucket, key, client=client)
    except S3NotFound:
        return None


def open_stream(
    bucket: str, key: str, *, if_match: str | None = None, client: Any = None
) -> tuple[ObjectInfo, BinaryIO]:
    """GetObject, pinned to ``if_match`` when given; returns the info and the unread body.

    The body is a file-like stream: read it in chunks and close it when done.
    """
    client = client or get_client()
    params: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if if_match:
        params["IfMatch"] = if_match
    with s3_errors(bucket, key):
        response = client.get_object(**params)
    return ObjectInfo.from_response(bucket, key, response), _TranslatingReader(
        response["Body"], bucket, key
    )


class _TranslatingReader(io.RawIOBase):
    """The response body as a raw stream whose network errors come out as our typed errors."""

    def __init__(self, body: Any, bucket: str, key: str) -> None:
        self._body = body
        self._bucket = bucket
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with s3_errors(self._bucket, self._key):
            data = self._body.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n

    def close(self) -> None:
        try:
            self._body.close()
        finally:
            super().close()


def iter_chunks(
    bucket: str,
    key: str,
    *,
    if_match: str | None = None,
    chunk_size: int = CHUNK_SIZE,
    client: Any = None,
) -> Iterator[bytes]:
    _, body = open_stream(bucket, key, if_match=if_match, client=client)
    with body:
        while chunk := body.read(chunk_size):
            yield chunk


def iter_lines(
    bucket: str,
    key: str,
    *,
    if_match: str | None = None,
    chunk_size: int = CHUNK_SIZE,
    client: Any = None,
) -> Iterator[bytes]:
    """Yield the object's lines (without line endings) holding one chunk in memory at a time."""
    pending = b""
    for chunk in iter_chunks(bucket, key, if_match=if_match, chunk_size=chunk_size, client=client):
        pending += chunk
        lines = pending.splitlines(keepends=True)
        # The last piece may be unfinished, and a trailing "\r" may be half of "\r\n".
        pending = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        for line in lines:
            yield line.rstrip(b"\r\n")
    if pending:
        yield pending.rstrip(b"\r\n")


def put_bytes(
    bucket: str,
    key: str,
    body: bytes | BinaryIO,
    *,
    metadata: Mapping[str, str] | None = None,
    content_type: str | None = None,
    tags: Mapping[str, str] | None = None,
    if_none_match: bool = False,
    client: Any = None,
) -> str:
    """PutObject encrypted as configured; ``if_none_match`` refuses to replace an existing object.

    Returns the new ETag.
    """
    client = client or get_client()
    params: dict[str, Any] = {
        "Bucket": bucket,
        "Key": key,
        "Body": body,
        "Metadata": dict(metadata or {}),
        **get_settings().sse_params(),
    }
    if content_type:
        params["ContentType"] = content_type
    if tags:
        params["Tagging"] = urlencode(tags)
    if if_none_match:
        params["IfNoneMatch"] = "*"
    with s3_errors(bucket, key):
        return client.put_object(**params)["ETag"]


def replace_metadata(info: ObjectInfo, metadata: Mapping[str, str], *, client: Any = None) -> str:
    """Rewrite an object's metadata by copying it onto itself, pinned to the ETag we read.

    This resets LastModified (and a multipart object's ETag): callers that need the original
    upload time must record it themselves. Returns the new ETag.
    """
    client = client or get_client()
    params: dict[str, Any] = {
        "Bucket": info.bucket,
        "Key": info.key,
        "CopySource": {"Bucket": info.bucket, "Key": info.key},
        "CopySourceIfMatch": info.etag,
        "Metadata": dict(metadata),
        "MetadataDirective": "REPLACE",
        "TaggingDirective": "COPY",
        **get_settings().sse_params(),
    }
    if info.content_type:
        params["ContentType"] = info.content_type
    with s3_errors(info.bucket, info.key):
        return client.copy_object(**params)["CopyObjectResult"]["ETag"]


def get_tags(bucket: str, key: str, *, client: Any = None) -> dict[str, str]:
    client = client or get_client()
    with s3_errors(bucket, key):
        response = client.get_object_tagging(Bucket=bucket, Key=key)
    return {t["Key"]: t["Value"] for t in response.get("TagSet", [])}
