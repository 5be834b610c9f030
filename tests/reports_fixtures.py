"""Shared helpers for the reports tests (the ``report_plugins`` fixture is registered for every
test in tests/conftest.py through ``pytest_plugins``)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tests.plugins.report_sources import SOURCES

ROOT = Path(__file__).resolve().parent.parent  # on PYTHONPATH of worker subprocesses

SERVICE = "6f1d2a8e-0b4c-4d1e-9a57-3c2b1e0f9d84"
OTHER_SERVICE = "0c8f5a2d-7e61-4b93-8d4a-1f2e3d4c5b6a"
PART_SIZE = 1024  # moto is told to accept 1 KiB parts (tests/conftest.py)


@pytest.fixture
def report_plugins(monkeypatch: pytest.MonkeyPatch) -> str:
    """The test plug-ins registered, and small parts so a few rows make a multipart upload."""
    monkeypatch.setenv("NOTIFY_REPORT_SOURCES", SOURCES)
    monkeypatch.setenv("NOTIFY_REPORT_PART_SIZE", str(PART_SIZE))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    return SOURCES


def report_bucket() -> str:
    from storage.settings import get_settings

    return get_settings().bucket("report-downloads")


def read_report(key: str, bucket: str | None = None) -> list[list[str]]:
    """The report's records, header first."""
    from storage.objects import iter_chunks

    body = b"".join(iter_chunks(bucket or report_bucket(), key))
    return list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))


def object_keys(bucket: str | None = None) -> list[str]:
    from storage.listing import iter_objects

    return [o.key for o in iter_objects(bucket or report_bucket())]


def pending_uploads(bucket: str | None = None) -> list[str]:
    from storage.listing import iter_multipart_uploads

    return [u.key for u in iter_multipart_uploads(bucket or report_bucket())]


def count_s3_calls(client: object) -> list[str]:
    """Record every S3 operation the client makes from now on (for 'before any S3 call')."""
    calls: list[str] = []

    def record(model: object, **_: object) -> None:
        calls.append(model.name)

    client.meta.events.register("before-call.s3", record)
    return calls
