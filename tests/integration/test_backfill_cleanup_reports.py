"""``notify-worker backfill cleanup`` and ``backfill reports`` against moto over HTTP."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from storage.settings import get_settings
from tasks.reports.backfill import report_request_id
from tests.cleanup_fixtures import SERVICE, keys_in, new_id, put_aged
from tests.ops_fixtures import invoke
from worker.runtime.beat import cleanup_purposes

pytestmark = pytest.mark.integration


def run(*args: str):
    result = invoke("backfill", *args, "--json")
    return result, (json.loads(result.stdout) if result.stdout.strip() else None)


# --- cleanup -----------------------------------------------------------------------------------


def old_letters(count: int) -> set[str]:
    return {
        put_aged("transient-letters", f"service-{SERVICE}/{new_id()}.pdf", 30) for _ in range(count)
    }


def test_cleanup_dry_run_lists_every_swept_purpose(tmp_path):
    result, summary = run("cleanup", "--dry-run", "--state-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert summary["planned"] == len(cleanup_purposes()) == 10


def test_cleanup_sweeps_report_then_execute_deletes(s3, redis_client, tmp_path):
    old = old_letters(3)
    state = str(tmp_path)
    buckets = ["--bucket", "transient-letters", "--bucket", "mou"]

    # Without --execute every sweep is the task's own dry run: it reports and keeps everything.
    result, summary = run("cleanup", *buckets, "--state-dir", state)
    assert result.exit_code == 0, result.output
    assert summary["done"] == 2 and summary["statuses"] == {"ok": 1, "skipped": 1}  # mou
    assert keys_in("transient-letters") == old

    result, summary = run("cleanup", *buckets, "--execute", "--state-dir", state)
    assert result.exit_code == 0, result.output
    assert summary["done"] == 2
    assert keys_in("transient-letters") == set()

    # The same command again is resumed from its checkpoint: nothing runs twice.
    _, summary = run("cleanup", *buckets, "--execute", "--state-dir", state)
    assert summary["already_done"] == 2 and summary["done"] == 0


def test_cleanup_guard_is_a_reported_failure(s3, redis_client, tmp_path):
    old_letters(3)
    result, summary = run(
        "cleanup",
        "--bucket",
        "transient-letters",
        "--execute",
        "--max-deletions",
        "1",
        "--state-dir",
        str(tmp_path),
    )
    assert result.exit_code == 1
    [failure] = summary["failures"]
    assert failure == {
        "item_id": "transient-letters",
        "error_code": "max_deletions_reached",
        "error_message": failure["error_message"],
    }
    assert len(keys_in("transient-letters")) == 2


def test_cleanup_refuses_an_unknown_purpose(s3, redis_client, tmp_path):
    result = invoke("backfill", "cleanup", "--bucket", "nope", "--state-dir", str(tmp_path))
    assert result.exit_code == 2 and "Unknown bucket purpose" in result.output


def test_cleanup_enqueued_to_the_worker(celery_worker, s3, redis_client, tmp_path):
    old_letters(2)
    result, summary = run(
        "cleanup",
        "--bucket",
        "transient-letters",
        "--execute",
        "--enqueue",
        "--wait",
        "--wait-timeout",
        "60",
        "--state-dir",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    assert summary["statuses"] == {"ok": 1}
    assert keys_in("transient-letters") == set()


# --- reports -----------------------------------------------------------------------------------


def report_keys(s3) -> set[str]:
    bucket = get_settings().bucket("report-downloads")
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"] for o in listed if not o["Key"].startswith("cleanup-audit/")}


def test_reports_grid_makes_each_report_once(s3, redis_client, tmp_path):
    services = [str(uuid.uuid4()) for _ in range(2)]
    args = ["reports", "--kind", "storage-usage", "--state-dir", str(tmp_path)]
    for service in services:
        args += ["--service-id", service]

    result, summary = run(*args)
    assert result.exit_code == 0, result.output
    assert summary["statuses"] == {"ok": 2}
    expected = {
        f"storage-usage_report/{report_request_id(s, 'storage-usage', {}, '')}.csv"
        for s in services
    }
    assert report_keys(s3) == expected

    # Even ignoring the checkpoint, a rerun finds its reports (same ids) and replaces nothing.
    result, summary = run(*args, "--restart")
    assert result.exit_code == 0
    assert summary["statuses"] == {"skipped": 2}
    assert report_keys(s3) == expected


def test_reports_from_a_file(s3, redis_client, tmp_path):
    given = str(uuid.uuid4())
    service = str(uuid.uuid4())
    file = Path(tmp_path / "reports.jsonl")
    file.write_text(
        json.dumps({"service_id": service, "kind": "storage-usage", "report_request_id": given})
        + "\n"
        + json.dumps({"service_id": service, "kind": "uploads", "params": {}})
        + "\n"
    )
    result, summary = run("reports", "--file", str(file), "--state-dir", str(tmp_path / "s"))
    assert result.exit_code == 0, result.output
    assert summary["statuses"] == {"ok": 2}
    keys = report_keys(s3)
    assert f"storage-usage_report/{given}.csv" in keys
    assert any(k.startswith("uploads_report/") for k in keys)


def test_reports_bad_lines_run_nothing(s3, redis_client, tmp_path):
    file = Path(tmp_path / "reports.jsonl")
    service = str(uuid.uuid4())
    file.write_text(
        json.dumps({"service_id": service, "kind": "storage-usage"})
        + "\n"
        + json.dumps({"service_id": service, "kind": "no-such-kind"})
        + "\n"
        + json.dumps({"service_id": "x", "kind": "uploads"})
        + "\n"
    )
    result = invoke("backfill", "reports", "--file", str(file), "--state-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "line 2:" in result.output and "line 3:" in result.output
    assert report_keys(s3) == set()


def test_reports_needs_a_selection(tmp_path):
    result = invoke("backfill", "reports", "--kind", "uploads", "--state-dir", str(tmp_path))
    assert result.exit_code == 2 and "--service-id" in result.output
