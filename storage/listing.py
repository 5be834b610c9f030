"""Paginated, streamed listing: one page (up to 1,000 keys) in memory at a time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.client import get_client
from storage.errors import s3_errors


@dataclass(frozen=True, slots=True)
class ListedObject:
    """What ListObjectsV2 tells about a key: no metadata, no tags."""

    key: str
    size: int
    etag: str
    last_modified: datetime


def iter_pages(
    bucket: str,
    prefix: str = "",
    *,
    page_size: int = 1000,
    start_after: str | None = None,
    client: Any = None,
) -> Iterator[list[ListedObject]]:
    """Yield one page of objects at a time, in key order."""
    client = client or get_client()
    params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
    if start_after:
        params["StartAfter"] = start_after
    while True:
        with s3_errors(bucket):
            response = client.list_objects_v2(**params)
        yield [
            ListedObject(o["Key"], int(o["Size"]), o.get("ETag", ""), o["LastModified"])
            for o in response.get("Contents", [])
        ]
        if not response.get("IsTruncated"):
            return
        params["ContinuationToken"] = response["NextContinuationToken"]


def iter_objects(
    bucket: str, prefix: str = "", *, start_after: str | None = None, client: Any = None
) -> Iterator[ListedObject]:
    for page in iter_pages(bucket, prefix, start_after=start_after, client=client):
        yield from page


@dataclass(frozen=True, slots=True)
class PendingUpload:
    key: str
    upload_id: str
    initiated: datetime


def iter_multipart_uploads(
    bucket: str, prefix: str = "", *, client: Any = None
) -> Iterator[PendingUpload]:
    """Incomplete multipart uploads, paginated."""
    client = client or get_client()
    params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    while True:
        with s3_errors(bucket):
            response = client.list_multipart_uploads(**params)
        for u in response.get("Uploads", []):
            yield PendingUpload(u["Key"], u["UploadId"], u["Initiated"])
        if not response.get("IsTruncated"):
            return
        params["KeyMarker"] = response.get("NextKeyMarker")
        params["UploadIdMarker"] = response.get("NextUploadIdMarker")


@dataclass(frozen=True, slots=True)
class ListedVersion:
    """One entry of ListObjectVersions: an object version or a delete marker."""

    key: str
    size: int  # 0 for a delete marker
    last_modified: datetime
    is_latest: bool
    delete_marker: bool


def iter_versions(bucket: str, prefix: str = "", *, client: Any = None) -> Iterator[ListedVersion]:
    """Every version and delete marker of a (versioned) bucket, one page in memory at a time."""
    client = client or get_client()
    params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    while True:
        with s3_errors(bucket):
            response = client.list_object_versions(**params)
        for v in response.get("Versions", []):
            yield ListedVersion(v["Key"], int(v["Size"]), v["LastModified"], v["IsLatest"], False)
        for m in response.get("DeleteMarkers", []):
            yield ListedVersion(m["Key"], 0, m["LastModified"], m["IsLatest"], True)
        if not response.get("IsTruncated"):
            return
        params["KeyMarker"] = response.get("NextKeyMarker")
        params["VersionIdMarker"] = response.get("NextVersionIdMarker")
