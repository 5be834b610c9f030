"""The metrics module's pieces in one process: outcomes from task results, S3 handlers on a
real botocore client (in-process moto), label hygiene, and the beat's Redis gauges."""

from __future__ import annotations

import json
import time

import pytest

from worker.runtime import metrics, queues


@pytest.fixture
def on(tmp_path, monkeypatch):
    """Worker metrics set up in this process, in a private multiprocess directory."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    metrics.prepare_multiprocess_dir()
    monkeypatch.setattr(metrics, "_m", metrics._worker_metrics())
    yield lambda: collect(tmp_path)


def collect(path) -> dict[tuple[str, tuple], float]:
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
    }


def test_task_status_from_state_and_result():
    assert metrics.task_status("RETRY", None) == "retry"
    assert metrics.task_status("FAILURE", None) == "failed"
    assert metrics.task_status("SUCCESS", {"status": "skipped"}) == "skipped"
    assert metrics.task_status("SUCCESS", {"status": "failed"}) == "failed"
    assert metrics.task_status("SUCCESS", None) == "ok"
    assert metrics.task_status("SUCCESS", {"status": "weird"}) == "ok"


def test_results_count_each_unit_of_work_once(on):
    csv = queues.CSV_PROCESS_BATCH
    metrics.observe_result(
        csv, {"status": "ok", "job_status": "finished", "rows_dispatched": 90, "rows_invalid": 10}
    )
    # A repeat of a finished job reports its outcome again as "skipped": not counted again.
    metrics.observe_result(
        csv, {"status": "skipped", "job_status": "finished", "rows_dispatched": 90}
    )
    metrics.observe_result(queues.LETTERS_MOVE_TRANSIENT, {"status": "ok", "already_moved": False})
    metrics.observe_result(queues.LETTERS_MOVE_TRANSIENT, {"status": "ok", "already_moved": True})
    metrics.observe_result(queues.LETTERS_MOVE_TRANSIENT, {"status": "skipped"})
    metrics.observe_result(queues.REPORTS_GENERATE, {"status": "ok", "kind": "uploads", "rows": 7})
    metrics.observe_result(queues.REPORTS_GENERATE, {"status": "skipped", "kind": "uploads"})
    metrics.observe_result(queues.CLEANUP_SWEEP, {"status": "ok", "purpose": "logo", "deleted": 3})
    metrics.observe_result(
        queues.CLEANUP_SWEEP, {"status": "ok", "purpose": "logo", "deleted": "x"}
    )
    found = on()
    assert found[("notify_csv_rows_total", (("result", "dispatched"),))] == 90
    assert found[("notify_csv_rows_total", (("result", "invalid"),))] == 10
    assert found[("notify_csv_jobs_total", (("status", "finished"),))] == 1
    assert found[("notify_letters_moved_total", ())] == 1
    assert found[("notify_report_rows_total", (("kind", "uploads"),))] == 7
    assert found[("notify_cleanup_objects_deleted_total", (("purpose", "logo"),))] == 3


def test_s3_calls_counted_by_operation_and_error_code(on, mock_s3):
    from storage.client import make_client
    from storage.settings import get_settings

    client = make_client()
    metrics.instrument_s3_client(client)
    bucket = get_settings().bucket("logo")
    client.put_object(Bucket=bucket, Key="a.png", Body=b"12345", ServerSideEncryption="AES256")
    client.get_object(Bucket=bucket, Key="a.png")["Body"].read()
    with pytest.raises(client.exceptions.NoSuchKey):
        client.get_object(Bucket=bucket, Key="missing.png")
    found = on()
    assert found[("notify_s3_requests_total", (("operation", "PutObject"), ("outcome", "ok")))] == 1
    assert found[("notify_s3_requests_total", (("operation", "GetObject"), ("outcome", "ok")))] == 1
    assert (
        found[("notify_s3_requests_total", (("operation", "GetObject"), ("outcome", "NoSuchKey")))]
        == 1
    )
    assert found[("notify_s3_bytes_total", (("direction", "written"),))] == 5
    assert found[("notify_s3_bytes_total", (("direction", "read"),))] == 5
    count = ("notify_s3_request_duration_seconds_count", (("operation", "GetObject"),))
    assert found[count] == 2
    for (_name, labels), _ in found.items():
        assert all("a.png" not in v and bucket not in v for _, v in labels)


def test_port_must_be_a_port():
    from storage.errors import ConfigurationError

    assert metrics.configured_port({}) is None
    assert metrics.configured_port({"NOTIFY_METRICS_PORT": " 9100 "}) == 9100
    for bad in ("http", "0", "70000"):
        with pytest.raises(ConfigurationError, match="NOTIFY_METRICS_PORT"):
            metrics.configured_port({"NOTIFY_METRICS_PORT": bad})
    assert metrics.configured_host({}) == "127.0.0.1"


def test_publish_stamps_the_send_time():
    headers: dict = {}
    metrics._stamp_sent_at(headers=headers)
    assert abs(headers[metrics.SENT_AT_HEADER] - time.time()) < 5


def test_beat_gauges_from_redis(redis_client, monkeypatch):
    """Queue lengths (priority lists included), oldest message age, dead letters and the last
    transient-letter sweep, as beat's exporter reports them. The queues are named for this test:
    a worker of the session consumes the real ones."""
    from prometheus_client.core import GaugeMetricFamily

    monkeypatch.setattr(metrics, "_broker_client", lambda: redis_client)
    monkeypatch.setattr(
        metrics, "monitored_queues", lambda: ["gauge-test-letters", "gauge-test-reports"]
    )
    metrics._tail_seen.clear()
    sent = time.time() - 120
    message = {"headers": {"id": "t1", metrics.SENT_AT_HEADER: sent}, "body": "e30="}
    redis_client.lpush("gauge-test-letters", json.dumps(message))
    redis_client.lpush("gauge-test-letters", json.dumps({"headers": {"id": "t2"}}))
    redis_client.lpush("gauge-test-letters\x06\x163", json.dumps({"headers": {"id": "t3"}}))
    redis_client.hset("notify:deadletter", mapping={"a": "{}", "b": "{}"})
    redis_client.hset(
        metrics.TRANSIENT_SWEEP_KEY,
        mapping={"waiting": 2, "oldest": "2000-01-01T00:00:00Z", "swept_at": 1700000000},
    )
    found = {}
    for family in metrics.redis_gauges():
        assert isinstance(family, GaugeMetricFamily)
        for s in family.samples:
            found[(s.name, tuple(s.labels.values()))] = s.value
    assert found[("notify_queue_messages", ("gauge-test-letters",))] == 3
    assert found[("notify_queue_messages", ("gauge-test-reports",))] == 0
    assert 119 < found[("notify_queue_oldest_message_age_seconds", ("gauge-test-letters",))] < 200
    assert found[("notify_queue_oldest_message_age_seconds", ("gauge-test-reports",))] == 0
    assert found[("notify_deadletters", ())] == 2
    assert found[("notify_transient_letters_overdue", ())] == 2
    assert found[("notify_transient_letter_oldest_age_seconds", ())] > 24 * 365 * 3600
    assert found[("notify_transient_letters_sweep_timestamp_seconds", ())] == 1700000000


def test_standby_beat_reports_no_redis_gauges():
    class Scheduler:
        lock = None  # RedBeat sets it once the lock is acquired
        lock_timeout = 60

    scheduler = Scheduler()
    collector = metrics.BeatCollector(scheduler)
    collector.ticked()  # a standby ticks too, without the lock
    names = [family.name for family in collector.collect()]
    assert names == ["notify_beat_active", "notify_beat_last_tick_timestamp_seconds"]
    assert not collector.active()
    scheduler.lock = object()
    collector.ticked()
    assert collector.active()
    collector.lock_held_at = time.time() - 61  # no tick with the lock for a lock timeout
    assert not collector.active()
