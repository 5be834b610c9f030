"""Transient letters under S3 faults: with 10% of requests failing (503, 500, connections
dropped before or after the work), every letter is moved exactly once, as in a clean run.

The same letters (same ids, so the same keys) are moved twice through the real worker: first
with the fault proxy paused, then, after the buckets are emptied and the letters put back,
with faults on. Results, destination objects (bytes, metadata, encryption), backups and the
transient bucket must match. A retried delete or copy that already happened (``drop_after``)
is the case that matters here.
"""

from __future__ import annotations

import hashlib
import logging
import uuid

import pytest

from storage.settings import get_settings
from tests.cleanup_fixtures import wipe_buckets
from tests.faults import task_retries
from tests.letters_fixtures import pdf_body, put_letter
from worker.runtime import queues
from worker.runtime.app import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]
logger = logging.getLogger(__name__)

POSTAGES = ("first", "second", "economy", "europe", "rest-of-world")
LETTER_COUNT = 30


def _letters() -> list[dict]:
    """Fixed ids, so both runs use the same keys; a few invalid letters are skipped."""
    rng = uuid.UUID("9b1c2d3e-4f50-4a61-8b72-000000000000").int
    letters = []
    for i in range(LETTER_COUNT):
        letters.append(
            {
                "service_id": str(uuid.UUID(int=rng + 1000 + i % 3)),
                "upload_id": str(uuid.UUID(int=rng + i)),
                "reference": f"REF{i:04d}",
                "postage": POSTAGES[i % len(POSTAGES)],
                "created_at": f"2024-03-{1 + i % 28:02d}T{8 + i % 12:02d}:15:00Z",
                "backup": i % 2 == 0,
                "status": "invalid" if i % 10 == 9 else "valid",
            }
        )
    return letters


def _snapshot(client, bucket: str) -> dict[str, tuple]:
    found = {}
    for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        head = client.head_object(Bucket=bucket, Key=obj["Key"])
        body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        found[obj["Key"]] = (
            hashlib.sha256(body).hexdigest(),
            head["Metadata"],
            head.get("ServerSideEncryption"),
            head.get("ContentType"),
        )
    return found


def _run_all(s3) -> dict:
    wipe_buckets()
    sent = []
    for i, letter in enumerate(_letters()):
        put_letter(
            s3,
            service_id=letter["service_id"],
            upload_id=letter["upload_id"],
            body=pdf_body(3000 + i, seed=str(i)),
            status=letter["status"],
        )
        kwargs = {k: v for k, v in letter.items() if k != "status"}
        sent.append(
            app.send_task(queues.LETTERS_MOVE_TRANSIENT, kwargs=kwargs, queue=queues.LETTERS)
        )
    settings = get_settings()
    return {
        "results": [r.get(timeout=120) for r in sent],
        "letters-pdf": _snapshot(s3, settings.bucket("letters-pdf")),
        "backups": _snapshot(s3, settings.bucket("letter-backups")),
        "transient": sorted(_snapshot(s3, settings.bucket("transient-letters"))),
    }


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    from worker.runtime import base

    monkeypatch.setattr(base, "backoff_seconds", lambda retries: 0.1)


def test_letters_under_faults_are_moved_exactly_once_as_in_a_clean_run(
    s3_faults, s3, celery_worker, redis_client
):
    with s3_faults.paused():
        clean = _run_all(s3)
    assert s3_faults.faults == 0
    statuses = [r["status"] for r in clean["results"]]
    assert statuses.count("ok") == LETTER_COUNT - LETTER_COUNT // 10
    assert statuses.count("skipped") == LETTER_COUNT // 10
    assert len(clean["letters-pdf"]) == LETTER_COUNT - LETTER_COUNT // 10
    assert len(clean["transient"]) == LETTER_COUNT // 10  # the invalid ones stay
    s3_faults.reset_counters()

    with task_retries() as retried:
        faulted = _run_all(s3)
    logger.warning(
        "letters under faults: %s; task retries %s; %s",
        s3_faults.summary(),
        dict(retried),
        s3_faults.stats(),
    )
    for i, (want, got) in enumerate(zip(clean["results"], faulted["results"], strict=True)):
        assert got == want, i
    assert faulted["letters-pdf"] == clean["letters-pdf"]
    assert faulted["backups"] == clean["backups"]
    assert faulted["transient"] == clean["transient"]
    assert set(s3_faults.faults_by_kind()) == {"slowdown", "internal", "drop_before", "drop_after"}
    assert s3_faults.unencrypted_writes == []

    # Now the nasty case on purpose: half of all copies and deletes happen, but the worker
    # never hears, so it retries something already done (conditional delete included).
    s3_faults.reset_counters()
    s3_faults.rate, s3_faults.kinds = 0.5, ("drop_after",)
    s3_faults.operations = {"CopyObject", "DeleteObject"}
    with task_retries() as retried:
        lost = _run_all(s3)
    logger.warning(
        "letters with lost answers: %s; task retries %s; %s",
        s3_faults.summary(),
        dict(retried),
        s3_faults.stats(),
    )
    assert lost == clean
    stats = s3_faults.stats()
    assert stats["DeleteObject"]["faults"]["drop_after"] >= 5
    assert stats["CopyObject"]["faults"]["drop_after"] >= 5


def test_a_burst_longer_than_botocores_retries_is_absorbed_by_the_task_retry(
    s3_faults, s3, celery_worker, redis_client
):
    """Six 503s in a row exhaust botocore (5 tries in all); the task itself retries
    with backoff (``NotifyTask``) and the letter is moved once."""
    s3_faults.rate = 0
    letter = _letters()[0]
    put_letter(s3, service_id=letter["service_id"], upload_id=letter["upload_id"])
    s3_faults.force("HeadObject", "slowdown", times=6)
    kwargs = {k: v for k, v in letter.items() if k != "status"}
    with task_retries() as retried:
        result = app.send_task(
            queues.LETTERS_MOVE_TRANSIENT, kwargs=kwargs, queue=queues.LETTERS
        ).get(timeout=60)
    assert result["status"] == "ok", result
    assert dict(retried) == {queues.LETTERS_MOVE_TRANSIENT: 1}
    assert s3_faults.stats()["HeadObject"]["faults"] == {"slowdown": 6}
    assert len(_snapshot(s3, get_settings().bucket("letters-pdf"))) == 1
