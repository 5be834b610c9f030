"""Server-side copies pinned to the source's ETag, with multipart copy for large objects.

Real S3 honours ``CopySourceIfMatch``; moto ignores it, so callers that need exactly-once must
also check the result (see ``tasks/letters``). Encryption is always set, as configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from storage.client import get_client
from storage.errors import s3_errors
from storage.objects import ObjectInfo, get_tags
from storage.settings import get_settings

MAX_SINGLE_COPY = 5 * 1024**3  # CopyObject's limit
COPY_PART_SIZE = 512 * 1024 * 1024


def copy_object(
    source: ObjectInfo,
    dest_bucket: str,
    dest_key: str,
    *,
    metadata: Mapping[str, str] | None = None,
    multipart_threshold: int = MAX_SINGLE_COPY,
    part_size: int = COPY_PART_SIZE,
    client: Any = None,
) -> str:
    """Copy ``source`` (as read, ETag pinned) to the destination; returns the new ETag.

    ``metadata`` replaces the source's metadata when given (tags are always kept); without it
    the metadata is copied as is.
    """
    client = client or get_client()
    src = {"Bucket": source.bucket, "Key": source.key}
    if source.size > multipart_threshold:
        return _multipart_copy(source, dest_bucket, dest_key, metadata, part_size, client)
    params: dict[str, Any] = {
        "Bucket": dest_bucket,
        "Key": dest_key,
        "CopySource": src,
        "CopySourceIfMatch": source.etag,
        "TaggingDirective": "COPY",
        **get_settings().sse_params(),
    }
    if metadata is not None:
        params["Metadata"] = dict(metadata)
        params["MetadataDirective"] = "REPLACE"
        if source.content_type:
            params["ContentType"] = source.content_type
    with s3_errors(dest_bucket, dest_key):
        return client.copy_object(**params)["CopyObjectResult"]["ETag"]


def _multipart_copy(
    source: ObjectInfo,
    dest_bucket: str,
    dest_key: str,
    metadata: Mapping[str, str] | None,
    part_size: int,
    client: Any,
) -> str:
    tags = get_tags(source.bucket, source.key, client=client)
    create: dict[str, Any] = {
        "Bucket": dest_bucket,
        "Key": dest_key,
        "Metadata": dict(source.metadata if metadata is None else metadata),
        **get_settings().sse_params(),
    }
    if source.content_type:
        create["ContentType"] = source.content_type
    if tags:
        create["Tagging"] = urlencode(tags)
    with s3_errors(dest_bucket, dest_key):
        upload_id = client.create_multipart_upload(**create)["UploadId"]
    try:
        parts = []
        for number, start in enumerate(range(0, source.size, part_size), start=1):
            end = min(start + part_size, source.size) - 1
            with s3_errors(source.bucket, source.key):
                response = client.upload_part_copy(
                    Bucket=dest_bucket,
                    Key=dest_key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": source.bucket, "Key": source.key},
                    CopySourceIfMatch=source.etag,
                    CopySourceRange=f"bytes={start}-{end}",
                )
            parts.append({"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]})
        with s3_errors(dest_bucket, dest_key):
            return client.complete_multipart_upload(
                Bucket=dest_bucket,
                Key=dest_key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )["ETag"]
    except BaseException:
        with s3_errors(dest_bucket, dest_key):
            client.abort_multipart_upload(Bucket=dest_bucket, Key=dest_key, UploadId=upload_id)
        raise
