"""Recovery from a broker that loses messages, called directly (in-process S3, the test Redis,
a recording fake app): sink batches lost after a job finished are re-sent (built-in sink: by
its counts; any sink: by the broker's run_id), and jobs enqueued by the client whose message
was lost are sent again and run once."""

from __future__ import annotations

import time
import uuid

import pytest

from tasks.csv_batches import processing, recovery, sink
from tasks.csv_batches import state as st
from tests.csv_fixtures import (
    SERVICE_ID,
    TEMPLATE_ID,
    FakeApp,
    csv_text,
    head,
    make_spec,
    sms_rows,
    upload,
    worker_settings,
)
from worker.client import NotifyClient
from worker.runtime import queues

ROWS = sms_rows(2500, bad_every=50)  # 2,450 valid: batches of 1000, 1000, 450
VALID = 2450
EXTERNAL_SINK = "example.database.save_notifications"


@pytest.fixture
def env(recovery_env):
    """A clean state, a sink queue of the test's own and a 1 s stale period."""
    return recovery_env


def sink_queue() -> str:
    from worker.runtime.settings import get_worker_settings

    return get_worker_settings().row_sink_queue


def finished_job(s3, app: FakeApp | None = None) -> tuple[str, FakeApp]:
    upload_id = upload(s3, csv_text(["phone number", "name"], ROWS))
    app = app or FakeApp()
    result = processing.process_job(make_spec(upload_id), app=app, queue="csv-batches")
    assert result["status"] == "ok" and result["rows_dispatched"] == VALID
    return upload_id, app


def store(batches) -> None:
    for batch in batches:
        sink.save_batch(batch)


def later(seconds: float = 5) -> float:
    return time.time() + seconds


def forget_redrive(upload_id: str) -> None:
    """What the passing of a stale period does to the one-re-drive-per-period marker."""
    st.get_redis().delete(st.redrive_key(upload_id))


# --- what a job records ---------------------------------------------------------------------------


def test_a_finished_job_records_its_sink_and_broker_life_and_is_watched(env):
    upload_id, _ = finished_job(env)
    state = st.read_job(upload_id)
    assert state["sink_task"] == queues.NOTIFICATIONS_SAVE_BATCH
    assert state["sink_queue"] == sink_queue()
    assert state["broker_run_id"] == st.broker_run_id() and len(state["broker_run_id"]) == 40
    assert upload_id in st.watched_jobs()
    assert st.get_redis().ttl(st.SINK_WATCH_KEY) > 0


def test_a_job_that_dispatched_nothing_is_not_watched(env):
    upload_id = upload(env, csv_text(["phone number", "name"], [["12345", "x"]]))
    processing.process_job(make_spec(upload_id), app=FakeApp())
    assert st.read_progress(upload_id)["dispatched"] == 0
    assert upload_id not in st.watched_jobs()


def test_a_resumed_dispatch_keeps_the_broker_life_of_its_first_batches(env, redis_client):
    upload_id = str(uuid.uuid4())
    redis_client.hset(st.job_key(upload_id), "status", "running")
    st.note_dispatch(upload_id, sink_task="t", sink_queue="q", fresh=True)
    assert st.read_job(upload_id)["broker_run_id"] == st.broker_run_id()
    redis_client.hset(st.job_key(upload_id), "broker_run_id", "an-earlier-life")
    st.note_dispatch(upload_id, sink_task="t", sink_queue="q", fresh=False)
    assert st.read_job(upload_id)["broker_run_id"] == "an-earlier-life"
    st.note_dispatch(upload_id, sink_task="t", sink_queue="q", fresh=True)
    assert st.read_job(upload_id)["broker_run_id"] == st.broker_run_id()


def test_the_sink_stamps_stored_at_only_when_it_stores_something_new(env):
    upload_id, app = finished_job(env)
    store(app.batches()[:1])
    first = st.read_job(upload_id)
    assert first["stored"] == "1000" and float(first["stored_at"]) > 0
    st.get_redis().hset(st.job_key(upload_id), "stored_at", "1")
    store(app.batches()[:1])  # a duplicate: nothing new
    assert st.read_job(upload_id)["stored_at"] == "1"


# --- built-in sink: counts ------------------------------------------------------------------------


def test_a_job_whose_rows_all_arrived_stops_being_watched_without_a_resend(env):
    upload_id, app = finished_job(env)
    store(app.batches())
    reconciler = FakeApp()
    result = recovery.reconcile(app=reconciler, rebuild=False, now=later())
    assert result["resent"] == 0 and reconciler.sent == []
    assert upload_id not in st.watched_jobs()


def test_lost_sink_batches_are_resent_once_the_sink_is_quiet(env):
    upload_id, first = finished_job(env)
    store(first.batches()[:1])  # the broker lost the other two
    before = head(env, upload_id)
    reconciler = FakeApp()
    assert recovery.reconcile(app=reconciler, rebuild=False)["resent"] == 0  # not quiet yet
    result = recovery.reconcile(app=reconciler, rebuild=False, now=later())
    assert result["resent"] == 1 and result["resent_upload_ids"] == [upload_id]
    assert [m["name"] for m in reconciler.sent] == [queues.CSV_PROCESS_BATCH]
    assert reconciler.sent[0]["queue"] == "csv-batches"
    assert reconciler.sent[0]["kwargs"] == make_spec(upload_id).task_kwargs()
    state = st.read_job(upload_id)
    assert state["resend"] == "1" and state["resends"] == "1"
    # One re-send per period, and none while the one requested has not run.
    assert recovery.reconcile(app=reconciler, rebuild=False, now=later())["resent"] == 0
    forget_redrive(upload_id)
    assert recovery.reconcile(app=reconciler, rebuild=False, now=later(0.5))["resent"] == 0

    # The worker's side: the same delivery as any other, the same batches as the first time.
    again = FakeApp()
    result = processing.process_job(make_spec(upload_id), app=again)
    assert result["status"] == "ok" and result["reason"] == "resent"
    assert result["rows_resent"] == VALID and result["rows_dispatched"] == VALID
    assert again.batches() == first.batches()
    after = st.read_job(upload_id)
    assert "resend" not in after and after["resent_rows"] == str(VALID)
    for name in ("status", "total", "dispatched", "invalid", "checkpoint", "finished_at", "runs"):
        assert after[name] == state[name], name  # the job's own record is untouched
    assert after["broker_run_id"] == st.broker_run_id()
    assert head(env, upload_id)["LastModified"] == before["LastModified"]  # no outcome rewrite
    assert head(env, upload_id)["Metadata"] == before["Metadata"]
    # A repeat of the re-send delivery changes nothing.
    assert processing.process_job(make_spec(upload_id), app=FakeApp())["status"] == "skipped"

    store(again.batches())
    assert st.read_progress(upload_id)["stored"] == VALID  # each row counted once
    forget_redrive(upload_id)
    assert recovery.reconcile(app=FakeApp(), rebuild=False, now=later())["resent"] == 0
    assert upload_id not in st.watched_jobs()


def test_a_resend_carries_the_request_id_the_job_was_sent_with(env):
    from worker.runtime.logs import log_context

    upload_id = upload(env, csv_text(["phone number", "name"], ROWS))
    first = FakeApp()
    with log_context(request_id="web-req-42"):
        processing.process_job(make_spec(upload_id), app=first, queue="csv-batches")
    assert st.load_or_empty(upload_id).request_id == "web-req-42"
    store(first.batches()[:1])
    reconciler = FakeApp()
    assert recovery.reconcile(app=reconciler, rebuild=False, now=later())["resent"] == 1
    assert reconciler.sent[0]["headers"] == {queues.REQUEST_ID_HEADER: "web-req-42"}


def test_a_job_sent_without_a_request_id_is_resent_without_one(env):
    _, first = finished_job(env)
    store(first.batches()[:1])
    reconciler = FakeApp()
    assert recovery.reconcile(app=reconciler, rebuild=False, now=later())["resent"] == 1
    assert reconciler.sent[0]["headers"] is None


def test_no_resend_while_the_sink_queue_could_still_hold_the_missing_rows(env, redis_client):
    _, first = finished_job(env)
    store(first.batches()[:1])  # 1,450 rows missing: two batches
    redis_client.rpush(sink_queue(), "waiting", "waiting")
    reconciler = FakeApp()
    assert recovery.reconcile(app=reconciler, rebuild=False, now=later())["resent"] == 0
    redis_client.lpop(sink_queue())  # one message cannot carry 1,450 rows
    assert recovery.reconcile(app=reconciler, rebuild=False, now=later())["resent"] == 1


def test_resends_are_bounded(env):
    upload_id, _ = finished_job(env)  # nothing is ever stored: a sink that drops everything
    for n in range(1, recovery.MAX_RESENDS + 1):
        forget_redrive(upload_id)
        result = recovery.reconcile(app=FakeApp(), rebuild=False, now=later(5 * n))
        assert result["resent"] == 1, n
        processing.process_job(make_spec(upload_id), app=FakeApp())
    forget_redrive(upload_id)
    reconciler = FakeApp()
    result = recovery.reconcile(app=reconciler, rebuild=False, now=later(100))
    assert result["resent"] == 0 and reconciler.sent == []
    assert upload_id not in st.watched_jobs()
    assert st.read_job(upload_id)["resends"] == str(recovery.MAX_RESENDS)


def test_a_replaced_file_is_never_resent(env):
    upload_id, _ = finished_job(env)
    recovery.reconcile(app=FakeApp(), rebuild=False, now=later())
    upload(env, csv_text(["phone number", "name"], sms_rows(10)), upload_id=upload_id)
    again = FakeApp()
    result = processing.process_job(make_spec(upload_id), app=again)
    assert result["status"] == "skipped" and result["resend_error"] == "file_changed"
    assert again.sent == []
    assert upload_id not in st.watched_jobs()
    assert "resend" not in st.read_job(upload_id)


# --- any sink: the broker's run_id ----------------------------------------------------------------


def restart(monkeypatch, seconds_ago: float = 1) -> None:
    """The broker restarted ``seconds_ago``: a new run_id from now on."""
    started = time.time() - seconds_ago
    monkeypatch.setattr(st, "broker_life", lambda: ("f" * 40, started))


@pytest.fixture
def external(env, monkeypatch):
    """Jobs whose rows go to a sink that is not the built-in one."""
    with worker_settings(monkeypatch, NOTIFY_ROW_SINK_TASK=EXTERNAL_SINK):
        yield env


def external_job(s3) -> str:
    upload_id, _ = finished_job(s3)
    assert st.read_job(upload_id)["sink_task"] == EXTERNAL_SINK
    return upload_id


def test_external_sink_batches_seen_leaving_the_broker_are_not_resent(external, monkeypatch):
    upload_id = external_job(external)
    assert recovery.reconcile(app=FakeApp(), rebuild=False, now=later())["resent"] == 0
    assert upload_id not in st.watched_jobs()  # its (empty) sink queue was seen on this life
    restart(monkeypatch)  # Redis restarts later
    assert recovery.reconcile(app=FakeApp(), rebuild=False, now=later())["resent"] == 0


def test_external_sink_batches_waiting_when_the_broker_restarts_are_resent(
    external, monkeypatch, redis_client
):
    upload_id = external_job(external)
    redis_client.rpush(sink_queue(), "batch", "batch", "batch")  # not consumed yet
    reconciler = FakeApp()
    assert recovery.reconcile(app=reconciler, rebuild=False, now=later())["resent"] == 0
    assert upload_id in st.watched_jobs()

    redis_client.delete(sink_queue())  # Redis restarts without its data: a new run_id
    restart(monkeypatch)
    result = recovery.reconcile(app=reconciler, rebuild=False, now=later())
    assert result["resent"] == 1 and reconciler.sent[0]["name"] == queues.CSV_PROCESS_BATCH

    again = FakeApp()
    assert processing.process_job(make_spec(upload_id), app=again)["rows_resent"] == VALID
    assert {m["name"] for m in again.sent} == {EXTERNAL_SINK}
    assert {m["queue"] for m in again.sent} == {sink_queue()}
    assert st.read_job(upload_id)["broker_run_id"] == "f" * 40
    # Dispatched on this life; its queue is empty (the fake app publishes nowhere): done.
    forget_redrive(upload_id)
    assert recovery.reconcile(app=FakeApp(), rebuild=False, now=later(10))["resent"] == 0
    assert upload_id not in st.watched_jobs()


def test_a_broker_that_will_not_say_its_run_id_resends_nothing(external, monkeypatch, redis_client):
    upload_id = external_job(external)
    redis_client.rpush(sink_queue(), "batch")
    monkeypatch.setattr(st, "broker_life", lambda: None)
    assert recovery.reconcile(app=FakeApp(), rebuild=False, now=later())["resent"] == 0
    assert upload_id in st.watched_jobs()


# --- jobs enqueued by the client ------------------------------------------------------------------


def enqueue(upload_id: str, app: FakeApp, **kw):
    return NotifyClient(app=app).process_csv(
        SERVICE_ID,
        upload_id,
        template_id=TEMPLATE_ID,
        template_type="sms",
        placeholders=kw.pop("placeholders", ["name"]),
        **kw,
    )


def test_the_client_records_a_queued_job_before_sending_it(env):
    upload_id = upload(env, csv_text(["phone number", "name"], sms_rows(3)))
    app = FakeApp()
    enqueue(upload_id, app, notification_count=9000)
    progress = NotifyClient(app=app).job_progress(upload_id)
    assert progress["status"] == "queued" and progress["queued_at"]
    state = st.read_job(upload_id)
    assert state["queue"] == queues.CSV_BATCHES_BULK == app.sent[0]["queue"]
    assert make_spec(upload_id).task_kwargs() == {
        "service_id": SERVICE_ID,
        "upload_id": upload_id,
        **st.job_params(state),
    }
    assert st.pending_uploads()[upload_id]["status"] == "queued"  # cleanup keeps its CSV
    assert 0 < st.get_redis().ttl(st.job_key(upload_id)) <= 7 * 24 * 3600

    # The job starts: running, as always; then finished.
    processing.process_job(make_spec(upload_id), app=FakeApp(), queue=queues.CSV_BATCHES_BULK)
    assert st.read_progress(upload_id)["status"] == "finished"
    enqueue(upload_id, FakeApp())  # enqueued again: the record is not overwritten
    assert st.read_progress(upload_id)["status"] == "finished"


def test_the_client_records_nothing_for_a_scheduled_job(env):
    upload_id = upload(env, csv_text(["phone number", "name"], sms_rows(3)))
    two_days_ahead = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 2 * 86400))
    enqueue(upload_id, FakeApp(), scheduled_for=two_days_ahead)
    assert st.read_job(upload_id) is None


def test_a_queued_job_whose_message_was_lost_is_sent_again_and_runs_once(env, monkeypatch):
    upload_id = upload(env, csv_text(["phone number", "name"], sms_rows(3)))
    enqueue(upload_id, FakeApp())  # the broker loses this message
    reconciler = FakeApp()
    assert recovery.reconcile(app=reconciler, rebuild=False)["resumed"] == 0  # too early
    monkeypatch.setattr(st, "queue_length", lambda queue: 1)  # something waits in its queue
    assert recovery.reconcile(app=reconciler, rebuild=False, now=later(2))["resumed"] == 0
    monkeypatch.setattr(st, "queue_length", lambda queue: 0)
    assert recovery.reconcile(app=reconciler, rebuild=False, now=later(2))["resumed"] == 1
    assert recovery.reconcile(app=reconciler, rebuild=False, now=later(2))["resumed"] == 0
    (message,) = reconciler.sent
    assert message["queue"] == queues.CSV_BATCHES
    assert message["kwargs"] == make_spec(upload_id).task_kwargs()

    result = processing.process_job(make_spec(upload_id), app=FakeApp(), queue=message["queue"])
    assert result["status"] == "ok" and result["rows_dispatched"] == 3
    assert st.read_job(upload_id)["runs"] == "1"
    forget_redrive(upload_id)
    assert recovery.reconcile(app=FakeApp(), rebuild=False, now=later(10))["resumed"] == 0


def test_a_queued_job_stuck_behind_a_queue_that_never_empties_is_sent_again(env, monkeypatch):
    upload_id = upload(env, csv_text(["phone number", "name"], sms_rows(3)))
    enqueue(upload_id, FakeApp())
    monkeypatch.setattr(st, "queue_length", lambda queue: 50)
    stale = 1
    late = later(stale * recovery.QUEUED_STALE_FACTOR + 1)
    assert recovery.reconcile(app=FakeApp(), rebuild=False, now=late)["resumed"] == 1


def test_a_queued_job_that_never_starts_is_failed_after_the_cap(env, monkeypatch):
    upload_id = upload(env, csv_text(["phone number", "name"], sms_rows(3)))
    enqueue(upload_id, FakeApp())
    monkeypatch.setattr(st, "queue_length", lambda queue: 0)
    sent = 0
    for n in range(10):
        forget_redrive(upload_id)
        sent += recovery.reconcile(app=FakeApp(), rebuild=False, now=later(2 + n))["resumed"]
    assert sent == 3 + 1  # NOTIFY_MAX_REDELIVERIES + 1
    progress = st.read_progress(upload_id)
    assert progress["status"] == "failed" and progress["error_code"] == "job_not_started"
    assert head(env, upload_id)["Metadata"]["processing_error_code"] == "job_not_started"


def test_a_queued_job_with_unusable_parameters_is_failed_not_resent(env, monkeypatch):
    upload_id = upload(env, csv_text(["phone number", "name"], sms_rows(3)))
    # Recorded with parameters the worker refuses (the client refuses them too now; an older
    # client or a hand-made record could still leave them).
    bad_template = {"id": TEMPLATE_ID, "type": "sms", "placeholders": [""]}
    kwargs = {"service_id": SERVICE_ID, "upload_id": upload_id, "template": bad_template}
    st.record_queued(upload_id, kwargs, queues.CSV_BATCHES)
    monkeypatch.setattr(st, "queue_length", lambda queue: 0)
    reconciler = FakeApp()
    assert recovery.reconcile(app=reconciler, rebuild=False, now=later(2))["resumed"] == 0
    assert reconciler.sent == []
    progress = st.read_progress(upload_id)
    assert progress["status"] == "failed" and progress["error_code"] == "invalid_job_state"


def test_external_sink_batches_handed_over_long_before_a_restart_are_not_resent(
    external, monkeypatch, redis_client
):
    upload_id = external_job(external)
    redis_client.rpush(sink_queue(), "batch")
    redis_client.zadd(st.SINK_WATCH_KEY, {upload_id: time.time() - 7200})  # finished 2 h ago
    restart(monkeypatch)
    assert recovery.reconcile(app=FakeApp(), rebuild=False, now=later())["resent"] == 0
    assert upload_id not in st.watched_jobs()


def test_an_external_sink_job_is_watched_at_most_for_the_backlog_window(external, redis_client):
    upload_id = external_job(external)
    redis_client.rpush(sink_queue(), "batch")  # a queue that never empties
    assert recovery.reconcile(app=FakeApp(), rebuild=False, now=later())["resent"] == 0
    assert upload_id in st.watched_jobs()
    window = recovery.EXTERNAL_SINK_BACKLOG_SECONDS
    assert recovery.reconcile(app=FakeApp(), rebuild=False, now=later(window + 5))["resent"] == 0
    assert upload_id not in st.watched_jobs()


def test_a_requested_resend_waiting_in_a_busy_job_queue_is_not_asked_for_again(env, monkeypatch):
    upload_id, _ = finished_job(env)
    assert recovery.reconcile(app=FakeApp(), rebuild=False, now=later())["resent"] == 1
    forget_redrive(upload_id)
    lengths = {"csv-batches": 5}
    monkeypatch.setattr(st, "queue_length", lambda queue: lengths.get(queue, 0))
    assert recovery.reconcile(app=FakeApp(), rebuild=False, now=later(2))["resent"] == 0
    # Three stale periods on, the request is taken as lost whatever the queue holds.
    assert recovery.reconcile(app=FakeApp(), rebuild=False, now=later(4))["resent"] == 1
    assert st.read_job(upload_id)["resends"] == "2"
