"""In-process moto shared by a whole test module (fast unit tests).

The ``mock_s3`` fixture in tests/conftest.py makes a new mock, client and every registry bucket
for each test (about a second each on the shared 2-core sandbox). Unit tests that only need
empty buckets share one mock per module instead and empty the buckets they use between tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest


@contextmanager
def moto_in_process(purposes: Iterable[str] | None = None) -> Iterator[Any]:
    """In-process moto with the registry's buckets (or only those of ``purposes``); yields the
    process's S3 client. Settings and clients are made again on the way in and out."""
    from moto import mock_aws

    from storage import admin
    from storage.client import get_client
    from storage.settings import get_settings, reload_settings
    from worker.runtime.redis_state import reset_redis
    from worker.runtime.settings import reload_worker_settings

    saved = os.environ.pop("S3_ENDPOINT_URL", None)
    try:
        with mock_aws():
            reload_worker_settings()
            reload_settings()
            reset_redis()
            client = get_client()
            if purposes is None:
                # In-process moto applies a bucket policy's Deny without its conditions.
                admin.create_buckets(deny_policy=False)
            else:
                for purpose in purposes:
                    client.create_bucket(
                        Bucket=get_settings().bucket(purpose),
                        CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
                    )
            yield client
    finally:
        if saved is not None:
            os.environ["S3_ENDPOINT_URL"] = saved
        reload_worker_settings()
        reload_settings()
        reset_redis()


def empty_buckets(client: Any, buckets: Iterable[str]) -> None:
    """Delete every object in ``buckets`` (names), a listing page at a time."""
    for bucket in buckets:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            listed = page.get("Contents", [])
            if listed:
                client.delete_objects(
                    Bucket=bucket,
                    Delete={"Objects": [{"Key": o["Key"]} for o in listed], "Quiet": True},
                )


@pytest.fixture(scope="module")
def module_s3() -> Iterator[Any]:
    """In-process moto with every registry bucket, made once per test module."""
    with moto_in_process() as client:
        yield client
