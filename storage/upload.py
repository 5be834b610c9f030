"""Streaming writes: bytes go out in parts as they come, so memory stays flat in object size.

``MultipartWriter`` buffers one part at a time. An object that never fills a part goes in a
single PutObject. Any exception inside the ``with`` block aborts the multipart upload, so no
partial object and no orphaned parts are left behind. ``if_none_match`` makes the final step
(PutObject or CompleteMultipartUpload) refuse to replace an object that already exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from storage.client import get_client
from storage.errors import s3_errors
from storage.settings import get_settings

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's floor for every part but the last
DEFAULT_PART_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True)
class WriteResult:
    bucket: str
    key: str
    etag: str
    size: int
    parts: int  # 0 for a single PutObject


class MultipartWriter:
    def __init__(
        self,
        bucket: str,
        key: str,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
        tags: Mapping[str, str] | None = None,
        if_none_match: bool = False,
        client: Any = None,
    ) -> None:
        if part_size <= 0:
            raise ValueError("part_size must be positive")
        self.bucket = bucket
        self.key = key
        self.part_size = part_size
        self._common: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "Metadata": dict(metadata or {}),
            **get_settings().sse_params(),
        }
        if content_type:
            self._common["ContentType"] = content_type
        if tags:
            self._common["Tagging"] = urlencode(tags)
        self._if_none_match = if_none_match
        self._client = client or get_client()
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None
        self._size = 0
        self.result: WriteResult | None = None

    @property
    def upload_id(self) -> str | None:
        return self._upload_id

    def write(self, data: bytes) -> None:
        self._buffer += data
        self._size += len(data)
        while len(self._buffer) >= self.part_size:
            self._send_part(bytes(self._buffer[: self.part_size]))
            del self._buffer[: self.part_size]

    def _send_part(self, body: bytes) -> None:
        with s3_errors(self.bucket, self.key):
            if self._upload_id is None:
                self._upload_id = self._client.create_multipart_upload(**self._common)["UploadId"]
            number = len(self._parts) + 1
            response = self._client.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
            )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})

    def close(self) -> WriteResult:
        """Finish the object (PutObject or CompleteMultipartUpload)."""
        if self.result is not None:
            return self.result
        if self._upload_id is None:
            params = dict(self._common, Body=bytes(self._buffer))
            if self._if_none_match:
                params["IfNoneMatch"] = "*"
            with s3_errors(self.bucket, self.key):
                etag = self._client.put_object(**params)["ETag"]
            self.result = WriteResult(self.bucket, self.key, etag, self._size, 0)
            return self.result
        if self._buffer:
            self._send_part(bytes(self._buffer))
            self._buffer.clear()
        params = {
            "Bucket": self.bucket,
            "Key": self.key,
            "UploadId": self._upload_id,
            "MultipartUpload": {"Parts": self._parts},
        }
        if self._if_none_match:
            params["IfNoneMatch"] = "*"
        with s3_errors(self.bucket, self.key):
            etag = self._client.complete_multipart_upload(**params)["ETag"]
        self.result = WriteResult(self.bucket, self.key, etag, self._size, len(self._parts))
        return self.result

    def abort(self) -> None:
        """Drop the upload and its parts (best effort: a lifecycle rule catches the rest)."""
        self._buffer.clear()
        if self._upload_id is None or self.result is not None:
            return
        upload_id, self._upload_id = self._upload_id, None
        with s3_errors(self.bucket, self.key):
            self._client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=upload_id
            )

    def __enter__(self) -> MultipartWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
            return
        # The original error matters more than the abort's; a lifecycle rule catches leftovers.
        with suppress(Exception):
            self.abort()
