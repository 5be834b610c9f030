"""`notify-worker reports generate` through click, in process and enqueued to the thread worker."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from click.testing import CliRunner

from tests.reports_fixtures import SERVICE, object_keys, read_report
from worker.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("report_plugins")]

KEY_RE = re.compile(r"synthetic_report/[0-9a-f-]{36}\.csv")


def run(*args: str):
    return CliRunner().invoke(main, ["reports", "generate", *args], catch_exceptions=False)


def test_in_process_makes_an_id_prints_the_key_and_never_replaces(s3):
    out = run("synthetic", "--service-id", SERVICE, "--param", "rows=30")
    assert out.exit_code == 0, out.output
    key = out.stdout.strip().splitlines()[-1]
    assert KEY_RE.fullmatch(key)
    assert len(read_report(key)) == 31
    assert "ok: 30 rows" in out.stderr

    request = key.split("/")[1].removesuffix(".csv")
    again = run("synthetic", "--service-id", SERVICE, "--report-request-id", request, "--json")
    assert again.exit_code == 0, again.output
    result = json.loads(again.stdout)
    assert (result["status"], result["key"], result["rows"]) == ("skipped", key, 30)


def test_enqueue_and_wait_prints_the_workers_result(celery_worker, s3, redis_client):
    request = str(uuid.uuid4())
    out = run(
        "synthetic", "--service-id", SERVICE, "--param", "rows=12",
        "--report-request-id", request, "--enqueue", "--wait", "--timeout", "60", "--json",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["status"] == "ok"
    assert result["key"] == f"synthetic_report/{request}.csv"
    assert result["rows"] == 12


def test_mistakes_are_clear_and_leave_nothing(s3):
    unknown = run("no-such-kind", "--service-id", SERVICE)
    assert unknown.exit_code == 1
    assert "Unknown report kind 'no-such-kind'" in unknown.stderr
    bad_params = run("uploads", "--service-id", SERVICE, "--param", "from=soon")
    assert bad_params.exit_code == 1
    assert "from must be an ISO 8601 timestamp" in bad_params.stderr
    assert run("uploads", "--service-id", SERVICE, "--param", "from").exit_code == 2
    assert run("uploads", "--service-id", "nope").exit_code == 2
    assert run("uploads", "--service-id", SERVICE, "--wait").exit_code == 2
    enqueue_bad = run("job-outcome", "--service-id", SERVICE, "--enqueue")
    assert enqueue_bad.exit_code == 1  # refused before anything is sent
    assert "needs upload_id" in enqueue_bad.stderr
    assert object_keys() == []
