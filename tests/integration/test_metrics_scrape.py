"""Metrics from a real prefork worker, scraped by a real Prometheus.

The worker replaces each pool child after every task (``--max-tasks-per-child 1``), so every
count below was written by a process that has exited by the time Prometheus reads it: the
figures must survive their child. Prometheus's HTTP query API must give exactly the work done:
CSV rows dispatched and invalid, letters moved (a repeated move not counted), objects deleted.
"""

from __future__ import annotations

import os
import shutil

import pytest

from storage.keys import transient_letter_key
from tests.cleanup_fixtures import SERVICE, new_id, put_aged
from tests.csv_fixtures import csv_text, job_kwargs, sms_rows, upload
from tests.letters_fixtures import put_letter
from tests.metrics_fixtures import (
    PROMETHEUS,
    prometheus,
    query_value,
    scrape,
    total,
    value,
    wait_for_value,
)
from worker.local.servers import free_port
from worker.local.stack import start_worker_process
from worker.runtime import queues

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 120
BAD_EVERY = 10  # 12 invalid rows
TIMEOUT = 60


@pytest.fixture
def metered_worker(tmp_path, moto_endpoint, redis_client):
    """A prefork worker serving metrics, replacing its child after every task."""
    from tests.conftest import worker_env

    port = free_port()
    handle = start_worker_process(
        worker_env(S3_ENDPOINT_URL=moto_endpoint, NOTIFY_METRICS_PORT=str(port)),
        tmp_path / "worker.log",
        concurrency=2,
        queues=QUEUE,
        extra_args=["--max-tasks-per-child=1"],
    )
    yield handle, port
    handle.stop()


QUEUE = "metrics-test"  # its own queue: the session's thread worker must not take these


def send(name: str, kwargs: dict):
    from worker.runtime.app import app

    return app.send_task(name, kwargs=kwargs, queue=QUEUE)


def run_the_work(s3) -> dict[str, int]:
    """A CSV job, three letters (one moved twice) and an executed cleanup; the expected counts."""
    upload_id = upload(s3, csv_text(["phone number", "name"], sms_rows(ROWS, bad_every=BAD_EVERY)))
    job = send(queues.CSV_PROCESS_BATCH, job_kwargs(upload_id)).get(timeout=TIMEOUT)
    assert job["status"] == "ok", job

    letters = [put_letter(s3) for _ in range(3)]
    moves = [
        send(
            queues.LETTERS_MOVE_TRANSIENT,
            letter.args(reference=f"REF{index}", created_at="2024-07-15T10:00:00Z"),
        )
        for index, letter in enumerate(letters)
    ]
    for sent in moves:
        assert sent.get(timeout=TIMEOUT)["status"] == "ok"
    again = send(queues.LETTERS_MOVE_TRANSIENT, letters[0].args(reference="REF0")).get(
        timeout=TIMEOUT
    )
    assert again["status"] == "ok" and again["already_moved"] is True

    for _ in range(4):
        put_aged("transient-letters", transient_letter_key(SERVICE, new_id()), 10)
    swept = send(queues.CLEANUP_SWEEP, {"bucket": "transient-letters", "dry_run": False}).get(
        timeout=TIMEOUT
    )
    assert swept["status"] == "ok" and swept["deleted"] == 4, swept
    return {
        "dispatched": ROWS - ROWS // BAD_EVERY,
        "invalid": ROWS // BAD_EVERY,
        "moved": 3,
        "deleted": 4,
        "tasks": 1 + 3 + 1 + 1,
    }


def check_prometheus(url: str, expected: dict[str, int]) -> None:
    """What Prometheus stored equals the work done."""
    for promql, want in (
        ('sum(notify_csv_rows_total{result="dispatched"})', expected["dispatched"]),
        ('sum(notify_csv_rows_total{result="invalid"})', expected["invalid"]),
        ("sum(notify_letters_moved_total)", expected["moved"]),
        ('sum(notify_cleanup_objects_deleted_total{purpose="transient-letters"})', 4),
        (f'sum(notify_tasks_total{{task="{queues.CSV_PROCESS_BATCH}",status="ok"}})', 1),
    ):
        assert wait_for_value(url, promql, want) == want, promql
    assert query_value(url, 'sum(notify_tasks_total{status="failed"})') in (None, 0.0)
    assert query_value(url, 'sum(notify_s3_requests_total{operation="CopyObject"})') >= 3
    assert query_value(url, 'sum(notify_s3_requests_total{outcome="ok"})') > 10
    count = query_value(url, "sum(notify_task_duration_seconds_count)")
    assert count is not None and count >= expected["tasks"]


def check_exporter(port: int, expected: dict[str, int]) -> None:
    samples = scrape(port)
    assert value(samples, "notify_csv_rows_total", result="dispatched") == expected["dispatched"]
    assert value(samples, "notify_csv_rows_total", result="invalid") == expected["invalid"]
    assert value(samples, "notify_letters_moved_total") == expected["moved"]
    assert (
        value(samples, "notify_cleanup_objects_deleted_total", purpose="transient-letters")
        == expected["deleted"]
    )
    assert total(samples, "notify_tasks_total", task=queues.LETTERS_MOVE_TRANSIENT) == 4
    assert total(samples, "notify_s3_bytes_total", direction="written") > 0
    assert total(samples, "notify_s3_request_duration_seconds_count", operation="GetObject") > 0
    assert total(samples, "notify_task_queue_wait_seconds_count") >= expected["tasks"]
    # Labels never carry ids or keys.
    for (_name, labels), _ in samples.items():
        for _label, label_value in labels:
            assert SERVICE not in label_value and "/" not in label_value


def test_counts_of_every_child_reach_prometheus(metered_worker, s3, tmp_path):
    handle, port = metered_worker
    children_before = set(handle.children())
    if not shutil.which(PROMETHEUS):
        # Still prove the exporter's figures; CI installs the prometheus package.
        expected = run_the_work(s3)
        check_exporter(port, expected)
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI installs Debian's prometheus package, but it is not there")
        pytest.skip("the Prometheus half needs Debian's prometheus package")
    with prometheus(tmp_path / "prometheus", {"worker": port}) as url:
        assert wait_for_value(url, 'up{job="worker"}', 1) == 1
        expected = run_the_work(s3)
        check_prometheus(url, expected)
    check_exporter(port, expected)
    # Every task ran in a child that has been replaced since.
    assert children_before and not children_before & set(handle.children())


def test_metrics_off_without_the_variable(prefork_worker, s3):
    """No port, no exporter and no multiprocess files."""
    handle = prefork_worker()
    assert "metrics at http" not in handle.log()
    assert "notify-metrics-" not in handle.log()
