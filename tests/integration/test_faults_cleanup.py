"""Cleanup under S3 faults: with 10% of requests failing (503, 500, connections dropped before
or after the work), every sweep deletes exactly what a clean sweep deletes, keeps the rest, and
audits every deletion.

The same objects (same keys and ages) are swept twice through the real worker: once with the
fault proxy paused, once, after the buckets are emptied and seeded again, with faults on.
Results (run ids and times aside), what is left in each bucket and the audited keys must match.
Lost answers to DeleteObjects and to the audit log's PutObject are retried: both are safe.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from storage.keys import isoformat
from tests.cleanup_fixtures import SERVICE, age, audit_lines, keys_in, put, seed, wipe_buckets
from tests.faults import task_retries
from tests.plugins import reference_check
from worker.runtime import queues
from worker.runtime.app import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]
logger = logging.getLogger(__name__)

PURPOSES = (
    "transient-letters",
    "csv-upload",
    "report-downloads",
    "logo",
    "email-attachments",
    "mou",
    "letters-pdf",
)
UNSTABLE = ("run_id", "audit_logs", "as_of")


def _uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _seed() -> None:
    """Expired and protected objects in every kind of bucket (same keys on every call)."""
    seed("transient-letters", (f"service-{SERVICE}/{_uuid(i)}.pdf" for i in range(1500)), 30)
    seed("transient-letters", (f"service-{SERVICE}/{_uuid(i)}.pdf" for i in range(1500, 1520)), 1)
    seed("csv-upload", (f"service-{SERVICE}/{_uuid(i)}.csv" for i in range(60)), 30)
    seed("csv-upload", (f"service-{SERVICE}/{_uuid(i)}.csv" for i in range(60, 70)), 1)
    # Old but scheduled for later: kept by its metadata alone (Redis knows nothing of it).
    for i in range(70, 75):
        put(
            "csv-upload",
            f"service-{SERVICE}/{_uuid(i)}.csv",
            metadata={"scheduled_for": "2099-01-01T00:00:00Z", "valid": "True"},
        )
        age("csv-upload", f"service-{SERVICE}/{_uuid(i)}.csv", 30)
    seed("report-downloads", (f"uploads_report/{_uuid(i)}.csv" for i in range(300)), 10)
    seed("report-downloads", (f"uploads_report/{_uuid(i)}.csv" for i in range(300, 320)), 2)
    seed("logo", (f"temp-{i}-logo.png" for i in range(30)), 10)
    seed("logo", (f"permanent-{i}-logo.png" for i in range(10)), 400)
    seed("logo", (f"letters/static/images/letter-template/temp-{i}.svg" for i in range(5)), 1)
    seed("email-attachments", (f"{SERVICE}/{_uuid(i)}" for i in range(40)), 30)
    seed("mou", ["crown.pdf", "non-crown.pdf"], 900)
    seed(
        "letters-pdf",
        (f"2020-01-0{i}/NOTIFY.REF{i}.D.2.C.20200101000000.PDF" for i in range(1, 6)),
        900,
    )


def _run_all(s3_faults) -> dict:
    wipe_buckets()
    with s3_faults.paused():
        _seed()
    as_of = isoformat(datetime.now(UTC))
    sent = [
        app.send_task(
            queues.CLEANUP_SWEEP,
            kwargs={"bucket": purpose, "dry_run": False, "as_of": as_of},
            queue=queues.CLEANUP,
        )
        for purpose in PURPOSES
    ]
    results = {}
    for purpose, result in zip(PURPOSES, sent, strict=True):
        value = result.get(timeout=180)
        results[purpose] = {k: v for k, v in value.items() if k not in UNSTABLE}
    with s3_faults.paused():
        left = {purpose: keys_in(purpose) for purpose in PURPOSES}
        left["report-downloads"] = {
            k for k in left["report-downloads"] if not k.startswith("cleanup-audit/")
        }
        audited = sorted((line["key"], line["reason"]) for line in audit_lines())
    return {"results": results, "left": left, "audited": audited}


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    from worker.runtime import base

    monkeypatch.setattr(base, "backoff_seconds", lambda retries: 0.1)


@pytest.fixture(autouse=True)
def reference_checked(monkeypatch):
    """Half the email attachments are still referenced (checked in this process's worker)."""
    monkeypatch.setenv("NOTIFY_REFERENCE_CHECK", "tests.plugins.reference_check:check")
    monkeypatch.setattr(
        reference_check, "REFERENCED", {f"{SERVICE}/{_uuid(i)}" for i in range(0, 40, 2)}
    )


def test_sweeps_under_faults_delete_what_a_clean_sweep_deletes(
    s3_faults, s3, celery_worker, redis_client
):
    with s3_faults.paused():
        clean = _run_all(s3_faults)
    assert s3_faults.faults == 0
    deleted = {p: r["deleted"] for p, r in clean["results"].items()}
    assert deleted == {
        "transient-letters": 1500,
        "csv-upload": 60,
        "report-downloads": 300,
        "logo": 30,
        "email-attachments": 20,
        "mou": 0,
        "letters-pdf": 0,
    }
    assert clean["results"]["mou"]["status"] == "skipped"
    assert len(clean["left"]["mou"]) == 2 and len(clean["left"]["letters-pdf"]) == 5
    assert len(clean["audited"]) == sum(deleted.values())
    s3_faults.reset_counters()

    with task_retries() as retried:
        faulted = _run_all(s3_faults)
    logger.warning(
        "cleanup under faults: %s; task retries %s; %s",
        s3_faults.summary(),
        dict(retried),
        s3_faults.stats(),
    )
    for purpose in PURPOSES:
        assert faulted["results"][purpose] == clean["results"][purpose], purpose
    assert faulted["left"] == clean["left"]
    assert faulted["audited"] == clean["audited"]
    assert set(s3_faults.faults_by_kind()) == {"slowdown", "internal", "drop_before", "drop_after"}
    assert s3_faults.unencrypted_writes == []

    # Now the nasty case on purpose: half the deletes and audit-log writes happen, but the
    # worker never hears and retries them.
    s3_faults.reset_counters()
    s3_faults.rate, s3_faults.kinds = 0.5, ("drop_after",)
    s3_faults.operations = {"DeleteObjects", "PutObject"}
    with task_retries() as retried:
        lost = _run_all(s3_faults)
    logger.warning(
        "cleanup with lost answers: %s; task retries %s; %s",
        s3_faults.summary(),
        dict(retried),
        s3_faults.stats(),
    )
    assert lost == clean
    assert s3_faults.stats()["DeleteObjects"]["faults"]["drop_after"] >= 2
    # Protected buckets: not even a delete was attempted.
    for bucket_name, operation in s3_faults.bucket_operations:
        if operation in ("DeleteObjects", "DeleteObject"):
            assert "mou" not in bucket_name and "letters-pdf" not in bucket_name
