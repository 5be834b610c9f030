"""Helpers and fixtures shared by the CSV batches tests (helpers imported by name; the fixtures
registered for every test in tests/conftest.py through ``pytest_plugins``)."""

from __future__ import annotations

import base64
import csv
import io
import json
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import pytest

from storage.keys import csv_upload_key
from storage.settings import get_settings
from tests.reliability_fixtures import wait_for as wait_for  # the CSV tests' import path
from tests.s3_fixtures import empty_buckets, moto_in_process

SERVICE_ID = "6ce466d0-fd6a-11e5-82f5-e0accb9d11a6"
TEMPLATE_ID = "f6d9a4d2-8a1f-4c5e-9a85-0fd7c7b0c0a1"
WEB_APP_METADATA = {
    "original_file_name": "june-reminders.csv",
    "notification_count": "3",
    "template_id": TEMPLATE_ID,
    "valid": "True",
}


def new_upload_id() -> str:
    return str(uuid.uuid4())


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def sms_rows(count: int, *, bad_every: int = 0, seed: int = 7) -> list[list[str]]:
    """Valid UK mobiles (``07700 9xxxxx`` drama range), with a bad one every ``bad_every``."""
    rng = random.Random(seed)
    rows = []
    for i in range(1, count + 1):
        if bad_every and i % bad_every == 0:
            phone = rng.choice(["12345", "not a number", "", "077009001234567"])
        else:
            phone = f"07700 9{i % 100000:05d}"
        rows.append([phone, f"Person {i}"])
    return rows


def upload(
    client: Any,
    text: str | bytes,
    *,
    service_id: str = SERVICE_ID,
    upload_id: str | None = None,
    source: str = "csv-upload",
    metadata: dict[str, str] | None = None,
) -> str:
    """Put a CSV where the web app would; returns the upload id."""
    upload_id = upload_id or new_upload_id()
    body = text.encode("utf-8") if isinstance(text, str) else text
    client.put_object(
        Bucket=get_settings().bucket(source),
        Key=csv_upload_key(service_id, upload_id),
        Body=body,
        Metadata=dict(WEB_APP_METADATA if metadata is None else metadata),
        ServerSideEncryption="AES256",
    )
    return upload_id


def head(client: Any, upload_id: str, *, service_id: str = SERVICE_ID, source="csv-upload"):
    return client.head_object(
        Bucket=get_settings().bucket(source), Key=csv_upload_key(service_id, upload_id)
    )


def job_kwargs(
    upload_id: str,
    *,
    template_type: str = "sms",
    placeholders: tuple[str, ...] = ("name",),
    service_id: str = SERVICE_ID,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "service_id": service_id,
        "upload_id": upload_id,
        "template": {"id": TEMPLATE_ID, "type": template_type, "placeholders": list(placeholders)},
        **extra,
    }


def make_spec(upload_id: str, **kw: Any):
    from tasks.csv_batches.spec import JobSpec

    kwargs = job_kwargs(upload_id, **kw)
    kwargs.pop("scheduled_for", None)
    return JobSpec.from_kwargs(**kwargs)


class FakeApp:
    """Stands in for the Celery app where a unit test only needs what was sent."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail_after = fail_after

    def producer_or_acquire(self, producer: Any = None):
        return nullcontext(object())

    def send_task(self, name: str, *, kwargs: dict[str, Any], queue: str, **options: Any):
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise SimulatedCrash(f"crash before message {len(self.sent) + 1}")
        # Round-trip through JSON: what a real broker would carry.
        self.sent.append(
            {"name": name, "kwargs": json.loads(json.dumps(kwargs)), "queue": queue, **options}
        )

    def batches(self) -> list[dict[str, Any]]:
        return [m["kwargs"]["batch"] for m in self.sent]

    def rows(self) -> list[dict[str, Any]]:
        return [row for batch in self.batches() for row in batch["rows"]]


class SimulatedCrash(BaseException):
    """Like a SIGKILL mid-job: not an Exception, so nothing on the way catches it."""


def broker_messages(redis_url: str, queue: str) -> list[dict[str, Any]]:
    """Decode the task messages waiting in a kombu Redis queue (oldest first)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    decoded = []
    for raw in reversed(client.lrange(queue, 0, -1)):
        message = json.loads(raw)
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, kwargs, _embed = json.loads(body)
        decoded.append({"headers": message["headers"], "args": args, "kwargs": kwargs})
    return decoded


@contextmanager
def worker_settings(monkeypatch: Any, **env: str) -> Iterator[None]:
    """Set NOTIFY_* env vars and reload the settings for the duration (restored after)."""
    from worker.runtime.settings import reload_worker_settings

    with monkeypatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        reload_worker_settings()
        try:
            yield
        finally:
            pass
    reload_worker_settings()


CSV_SOURCES = ("csv-upload", "contact-list")


@pytest.fixture(scope="module")
def csv_module_s3() -> Iterator[Any]:
    """In-process moto for a whole test module, with only the CSV buckets (fast unit tests)."""
    with moto_in_process(CSV_SOURCES) as client:
        yield client


@pytest.fixture
def csv_s3(csv_module_s3: Any, redis_client: Any) -> Iterator[Any]:
    """``csv_module_s3`` with its CSV buckets emptied, plus a clean ``notify:`` Redis."""
    client = csv_module_s3
    empty_buckets(client, [get_settings().bucket(source) for source in CSV_SOURCES])
    yield client


@pytest.fixture
def recovery_env(csv_s3: Any, redis_client: Any, monkeypatch: Any) -> Iterator[Any]:
    """``csv_s3`` with a sink queue of the test's own and a 1 s stale period (the recovery
    tests); the queue's lanes are deleted afterwards. Yields the S3 client."""
    from tasks.csv_batches import state as st

    queue = f"unit-sink-{uuid.uuid4().hex[:8]}"
    with worker_settings(monkeypatch, NOTIFY_JOB_STALE_SECONDS="1", NOTIFY_ROW_SINK_QUEUE=queue):
        yield csv_s3
    for suffix in st._PRIORITY_SUFFIXES:
        redis_client.delete(queue + suffix)
