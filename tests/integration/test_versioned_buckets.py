"""Every workflow stays correct on versioned buckets (moto's server over HTTP, versioning on):
a letter move's delete on a versioned transient bucket leaves a delete marker and the move still
happens exactly once; cleanup's deletes leave delete markers and its audit log says so; the
storage-usage report counts noncurrent versions' bytes and delete markers separately."""

from __future__ import annotations

import csv
import io

import pytest

from storage.objects import put_bytes
from tasks.cleanup.sweep import sweep
from tests.cleanup_fixtures import audit_lines, bucket, new_id, seed
from tests.letters_fixtures import DEST_KEY, letters_bucket, put_letter, transient_bucket
from worker.runtime import queues

pytestmark = pytest.mark.integration

SERVICE = "6b1f8d4c-5a0e-4c51-9a0e-3d2f8e3b1c11"


def versions(client, name: str, prefix: str = "") -> tuple[list[dict], list[dict]]:
    found = client.list_object_versions(Bucket=name, Prefix=prefix)
    return found.get("Versions", []), found.get("DeleteMarkers", [])


def enable_versioning(client, purpose: str) -> None:
    client.put_bucket_versioning(
        Bucket=bucket(purpose), VersioningConfiguration={"Status": "Enabled"}
    )


def test_the_critical_buckets_are_versioned_by_create(s3):
    for purpose in ("mou", "letter-backups", "letters-pdf"):
        assert s3.get_bucket_versioning(Bucket=bucket(purpose))["Status"] == "Enabled"


def test_a_letter_moves_exactly_once_and_leaves_a_delete_marker(celery_worker, s3, redis_client):
    from worker.runtime.app import app

    enable_versioning(s3, "transient-letters")  # as an operator might
    letter = put_letter(s3)
    sent = [
        app.send_task(
            queues.LETTERS_MOVE_TRANSIENT,
            kwargs=letter.args(),
            queue=queues.TASK_QUEUES[queues.LETTERS_MOVE_TRANSIENT],
        )
        for _ in range(2)
    ]
    results = [r.get(timeout=30) for r in sent]
    assert [r["status"] for r in results] == ["ok", "ok"]
    assert sorted(r["already_moved"] for r in results) == [False, True]
    # letters-pdf (versioned by create): one object, one version: written once
    kept, markers = versions(s3, letters_bucket(), DEST_KEY)
    assert [v["Key"] for v in kept] == [DEST_KEY] and markers == []
    # transient: the move's delete hid the letter behind a delete marker; the version stays
    kept, markers = versions(s3, transient_bucket(), letter.key)
    assert [m["Key"] for m in markers] == [letter.key] and markers[0]["IsLatest"]
    assert [v["ETag"] for v in kept] == [letter.etag] and not kept[0]["IsLatest"]
    assert s3.list_objects_v2(Bucket=transient_bucket()).get("KeyCount") == 0


def test_cleanup_on_a_versioned_bucket_says_it_leaves_delete_markers(s3):
    enable_versioning(s3, "transient-letters")
    old = set(seed("transient-letters", (f"service-{SERVICE}/{new_id()}.pdf" for _ in range(3)), 9))
    result = sweep("transient-letters", dry_run=False).as_dict()
    assert result["deleted"] == 3
    assert result["versioning"] == "Enabled" and result["delete_markers"] is True
    lines = audit_lines()
    assert {line["key"] for line in lines} == old
    assert all(line["delete_marker"] is True for line in lines)
    (log_key,) = result["audit_logs"]
    head = s3.head_object(Bucket=bucket("report-downloads"), Key=log_key)
    assert head["Metadata"]["versioning"] == "Enabled"
    _, markers = versions(s3, bucket("transient-letters"))
    assert {m["Key"] for m in markers} == old


def test_cleanup_on_an_unversioned_bucket_says_nothing_about_markers(s3):
    seed("transient-letters", [f"service-{SERVICE}/{new_id()}.pdf"], 9)
    result = sweep("transient-letters", dry_run=False).as_dict()
    assert result["deleted"] == 1
    assert "versioning" not in result and "delete_markers" not in result
    (line,) = audit_lines()
    assert set(line) == {"key", "size", "last_modified", "reason"}


def test_storage_usage_counts_noncurrent_versions_and_markers_separately(celery_worker, s3):
    from storage.keys import report_key
    from worker.runtime.app import app

    mou = bucket("mou")
    put_bytes(mou, "crown.pdf", b"a" * 10)
    put_bytes(mou, "crown.pdf", b"b" * 20)  # the 10 bytes become a noncurrent version
    put_bytes(mou, "non-crown.pdf", b"c" * 5)
    s3.delete_object(Bucket=mou, Key="non-crown.pdf")  # noncurrent 5 bytes + a delete marker
    put_bytes(bucket("csv-upload"), f"service-{SERVICE}-notify/{new_id()}.csv", b"x" * 7)

    request_id = new_id()
    result = app.send_task(
        queues.REPORTS_GENERATE,
        kwargs={
            "service_id": SERVICE,
            "kind": "storage-usage",
            "report_request_id": request_id,
            "params": {},
        },
        queue=queues.TASK_QUEUES[queues.REPORTS_GENERATE],
    ).get(timeout=60)
    assert result["status"] == "ok", result
    body = s3.get_object(Bucket=bucket("report-downloads"), Key=result["key"])["Body"].read()
    assert result["key"] == report_key("storage-usage", request_id)
    records = list(csv.reader(io.StringIO(body.decode())))
    header = records[0]
    assert header[7:] == ["noncurrent_versions", "noncurrent_bytes", "delete_markers"]
    rows = {(r[1], r[2]): dict(zip(header, r, strict=True)) for r in records[1:]}
    mou_row = rows[("mou", "")]
    assert (mou_row["objects"], mou_row["bytes"]) == ("1", "20")  # current versions only
    assert (mou_row["noncurrent_versions"], mou_row["noncurrent_bytes"]) == ("2", "15")
    assert mou_row["delete_markers"] == "1"
    csv_row = rows[("csv-upload", SERVICE)]
    assert (csv_row["objects"], csv_row["bytes"], csv_row["noncurrent_bytes"]) == ("1", "7", "0")
