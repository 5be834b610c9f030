"""Helpers shared by the cleanup tests: put objects, age them, list what is left.

Objects are aged by setting LastModified in moto's in-process backend, which both the
``mock_s3`` fixture and the ``s3`` fixture's ThreadedMotoServer (same process) use.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from storage.objects import put_bytes
from storage.settings import get_settings

SERVICE = "9d3f4d1e-4a4b-4c5e-8f60-1a2b3c4d5e6f"
OTHER_SERVICE = "0b7c1a52-2f7e-4e55-9c1d-6a5b4c3d2e1f"


def bucket(purpose: str) -> str:
    return get_settings().bucket(purpose)


def new_id() -> str:
    return str(uuid.uuid4())


def put(
    purpose: str, key: str, body: bytes = b"x", metadata: Mapping[str, str] | None = None
) -> str:
    put_bytes(bucket(purpose), key, body, metadata=metadata)
    return key


def set_last_modified(purpose: str, key: str, when: datetime) -> None:
    """Make moto report ``when`` as the object's LastModified (listing and HEAD)."""
    fake = _backend().buckets[bucket(purpose)].keys[key]
    fake.last_modified = when.astimezone(UTC).replace(tzinfo=None)


def age(purpose: str, key: str, days: float) -> str:
    set_last_modified(purpose, key, datetime.now(UTC) - timedelta(days=days))
    return key


def put_aged(purpose: str, key: str, days: float, **kw) -> str:
    put(purpose, key, **kw)
    return age(purpose, key, days)


def _backend():
    return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]


def seed(purpose: str, keys: Iterable[str], days: float, body: bytes = b"x") -> list[str]:
    """Create many aged objects straight in moto's backend (about 10,000 a second), for
    tests that need more than a page of keys. AES256 as every real write."""
    backend = _backend()
    name = bucket(purpose)
    when = (datetime.now(UTC) - timedelta(days=days)).replace(tzinfo=None)
    created = []
    for key in keys:
        backend.put_object(name, key, body, encryption="AES256").last_modified = when
        created.append(key)
    return created


def wipe_buckets() -> None:
    """Empty every registry bucket (objects and multipart uploads) in moto's backend."""
    backend = _backend()
    for name in get_settings().bucket_names.values():
        found = backend.buckets.get(name)
        if found is not None:
            found.keys.clear()
            found.multiparts.clear()


def keys_in(purpose: str, prefix: str = "") -> set[str]:
    from storage.listing import iter_objects

    return {o.key for o in iter_objects(bucket(purpose), prefix)}


def audit_lines(prefix: str = "cleanup-audit/") -> list[dict]:
    """Every line of every audit log in the report-downloads bucket."""
    import json

    from storage.objects import iter_lines

    lines = []
    for key in sorted(keys_in("report-downloads", prefix)):
        lines.extend(json.loads(line) for line in iter_lines(bucket("report-downloads"), key))
    return lines


def csv_key(service_id: str = SERVICE, upload_id: str | None = None) -> str:
    from storage.keys import csv_upload_key

    return csv_upload_key(service_id, upload_id or new_id())


@pytest.fixture
def fast_s3(module_s3) -> Iterator[object]:
    """The module's in-process moto (``tests.s3_fixtures``) with every bucket emptied."""
    wipe_buckets()
    yield module_s3
