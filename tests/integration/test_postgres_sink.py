"""The PostgreSQL store end to end: real prefork workers, the test Redis, moto over HTTP and
the machine's PostgreSQL (a database of this module's own). Every test ends with the table
holding each valid row exactly once: ``count(*)`` equal to the valid rows, no duplicate id."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from click.testing import CliRunner

from tasks.csv_batches import recovery
from tasks.csv_batches import state as st
from tests.csv_fixtures import (
    SERVICE_ID,
    TEMPLATE_ID,
    csv_text,
    job_kwargs,
    sms_rows,
    upload,
)
from tests.db_fixtures import table_rows, truncate
from tests.reliability_fixtures import wait_for
from worker.runtime import queues

pytestmark = pytest.mark.integration


def private_queues() -> tuple[str, str]:
    """A job queue and a sink queue only this test's worker consumes (the session's thread
    worker consumes every standard queue and would steal the messages)."""
    tag = uuid.uuid4().hex[:8]
    return f"test-pg-csv-{tag}", f"test-pg-sink-{tag}"


def in_table(pg_url: str, upload_id: str) -> tuple[int, int]:
    sql = "SELECT count(*), count(DISTINCT id) FROM notifications WHERE job_id = %s"
    return table_rows(pg_url, sql, upload_id)[0]


def start(rel_workers, sink_queue: str, job_queue: str, concurrency: int = 2, **env: str):
    return rel_workers(
        concurrency=concurrency,
        queues=f"{job_queue},{sink_queue},{sink_queue}-bulk",
        NOTIFY_ROW_SINK_QUEUE=sink_queue,
        **env,
    )


def reconcile_now(**extra) -> dict:
    """One reconciler pass in this process, as if the stale period had passed."""
    return recovery.reconcile(rebuild=False, now=time.time() + 1000, **extra)


def test_a_job_is_stored_once_reported_shown_and_survives_duplicates(
    s3, redis_client, rel_workers, pg_url
):
    from tasks.reports.generate import generate_report
    from tests.reports_fixtures import read_report
    from worker.cli import main
    from worker.runtime.app import app

    job_queue, sink_queue = private_queues()
    start(rel_workers, sink_queue, job_queue)
    upload_id = upload(s3, csv_text(["phone number", "name"], sms_rows(2500, bad_every=50)))
    result = app.send_task(
        queues.CSV_PROCESS_BATCH, kwargs=job_kwargs(upload_id), queue=job_queue
    ).get(timeout=120)
    assert result["status"] == "ok" and result["rows_dispatched"] == 2450, result
    wait_for(lambda: in_table(pg_url, upload_id)[0] >= 2450, timeout=60, what="rows stored")
    assert in_table(pg_url, upload_id) == (2450, 2450)

    # The report reads the table, in row order; its rows equal the table's.
    table = table_rows(
        pg_url,
        'SELECT id::text, job_id::text, job_row_number::text AS n, "to", template_id::text, '
        "notification_type FROM notifications WHERE job_id = %s ORDER BY job_row_number",
        upload_id,
    )
    params = {"upload_id": upload_id}
    report = generate_report(str(uuid.uuid4()), SERVICE_ID, "notifications", params)
    records = read_report(report["key"])
    assert records[0] == [
        "notification_id", "upload_id", "row_number", "recipient", "template_id", "template_type"
    ]  # fmt: skip
    assert [tuple(r) for r in records[1:]] == table
    assert table[0][:3] == (str(uuid.uuid5(uuid.UUID(upload_id), "1")), upload_id, "1")
    assert table[0][3:] == ("447700900001", TEMPLATE_ID, "sms")

    shown = CliRunner().invoke(main, ["jobs", "show", upload_id, "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["stored"] == 2450
    assert json.loads(shown.output)["stored_in"] == "postgresql"

    # The same batch delivered twice, through the worker: stored once.
    fresh = str(uuid.uuid4())
    batch = {
        "service_id": SERVICE_ID,
        "upload_id": fresh,
        "template_id": TEMPLATE_ID,
        "template_type": "email",
        "sender_id": None,
        "rows": [
            {
                "notification_id": str(uuid.uuid5(uuid.UUID(fresh), str(n))),
                "row_number": n,
                "recipient": f"p{n}@example.com",
                "personalisation": {"email address": f"p{n}@example.com"},
            }
            for n in range(1, 11)
        ],
    }
    sent = [
        app.send_task(queues.NOTIFICATIONS_SAVE_BATCH, kwargs={"batch": batch}, queue=sink_queue)
        for _ in range(2)
    ]
    assert sorted(r.get(timeout=60)["stored"] for r in sent) == [0, 10]
    assert in_table(pg_url, fresh) == (10, 10)

    # The broker "lost" the last batch: the reconciler sees it in the table's count, not in the
    # Redis counter, and has the whole job re-sent; every row ends up there once.
    table_rows(
        pg_url,
        "WITH gone AS (DELETE FROM notifications WHERE job_id = %s AND job_row_number > 2000 "
        "RETURNING 1) SELECT count(*) FROM gone",
        upload_id,
    )
    assert in_table(pg_url, upload_id)[0] < 2450
    assert st.read_progress(upload_id)["stored"] == 2450  # Redis still believes they are there
    assert reconcile_now(app=app)["resent_upload_ids"] == [upload_id]
    wait_for(lambda: in_table(pg_url, upload_id)[0] >= 2450, timeout=90, what="re-sent rows")
    wait_for(lambda: not st.read_job(upload_id).get("resend"), timeout=60, what="re-send done")
    assert in_table(pg_url, upload_id) == (2450, 2450)


@pytest.mark.slow
def test_a_200k_row_job_whose_worker_is_killed_four_times(s3, redis_client, rel_workers, pg_url):
    """SIGKILL the prefork worker (parent and children) four times while the job dispatches and
    its batches are stored; each time a new worker starts and the reconciler re-drives the
    job. Killed transactions roll back; their messages come back (visibility timeout) or the
    reconciler re-sends the job: the table ends with every valid row once."""
    from worker.runtime.app import app
    from worker.runtime.settings import reload_worker_settings

    job_queue, sink_queue = private_queues()
    env = {
        "NOTIFY_JOB_STALE_SECONDS": "2",
        "NOTIFY_VISIBILITY_TIMEOUT_SECONDS": "20",
        "NOTIFY_TASK_TIME_LIMIT_SECONDS": "18",
        "NOTIFY_CSV_MAX_ROWS": "200000",
    }
    total, valid = 200_000, 196_000
    upload_id = upload(s3, csv_text(["phone number", "name"], sms_rows(total, bad_every=50)))
    worker = start(rel_workers, sink_queue, job_queue, **env)
    app.send_task(queues.CSV_PROCESS_BATCH, kwargs=job_kwargs(upload_id), queue=job_queue)

    def progress() -> int:
        checkpoint = int((st.read_job(upload_id) or {}).get("checkpoint") or 0)
        return checkpoint + in_table(pg_url, upload_id)[0]

    kills = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NOTIFY_JOB_STALE_SECONDS", "2")
        reload_worker_settings()
        try:
            for k in range(4):
                # Spread the kills over the job: dispatching, then storing.
                goal = (k + 1) * 2 * valid // 5
                wait_for(lambda g=goal: progress() >= g, timeout=180, interval=0.02)
                worker.kill()
                kills.append((st.read_job(upload_id).get("status"), in_table(pg_url, upload_id)))
                worker = start(rel_workers, sink_queue, job_queue, **env)
                reconcile_now(app=app)

            def done() -> bool:
                if in_table(pg_url, upload_id)[0] >= valid:
                    return True
                reconcile_now(app=app)  # resume a dead run, re-send lost batches
                return False

            wait_for(done, timeout=300, interval=2, what="every valid row stored")
        finally:
            patch.undo()
            reload_worker_settings()
    assert len(kills) == 4
    assert any(status == "running" for status, _ in kills), kills  # a kill mid-dispatch
    assert any(0 < stored < valid for _, (stored, _) in kills), kills  # a kill mid-storing
    assert in_table(pg_url, upload_id) == (valid, valid)
    wait_for(lambda: st.read_progress(upload_id)["status"] == "finished", timeout=60)
    progress_now = st.read_progress(upload_id)
    assert (progress_now["total"], progress_now["dispatched"]) == (total, valid)
    # Later redeliveries (the killed messages come back) change nothing.
    time.sleep(3)
    assert in_table(pg_url, upload_id) == (valid, valid)


@pytest.mark.slow
def test_connections_terminated_during_a_job(s3, redis_client, rel_workers, pg_url):
    """The server ends the workers' connections again and again in the middle of their
    statements (``pg_terminate_backend``): each failed batch rolls back and is retried with
    backoff; the table ends with every valid row once."""
    from worker.runtime.app import app

    job_queue, sink_queue = private_queues()
    worker = start(rel_workers, sink_queue, job_queue)
    upload_id = upload(s3, csv_text(["phone number", "name"], sms_rows(100_000, bad_every=50)))
    valid = 98_000
    hits: list[int] = []
    stop = threading.Event()

    def terminate() -> None:
        # Only connections busy in a statement or a transaction: the hard case (an idle one
        # is replaced by the pool's check before use, which is also exercised).
        sql = (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'notify-worker' "
            "AND state IN ('active', 'idle in transaction') AND pid <> pg_backend_pid()"
        )
        while not stop.is_set() and len(hits) < 6:
            hits.extend(1 for (ok,) in table_rows(pg_url, sql) if ok)
            time.sleep(0.03)

    killer = threading.Thread(target=terminate, daemon=True)
    killer.start()
    result = app.send_task(
        queues.CSV_PROCESS_BATCH, kwargs=job_kwargs(upload_id), queue=job_queue
    ).get(timeout=180)
    assert result["rows_dispatched"] == valid
    try:
        wait_for(lambda: in_table(pg_url, upload_id)[0] >= valid, timeout=240, interval=0.5)
    finally:
        stop.set()
        killer.join(10)
    assert len(hits) >= 1, "no connection was terminated: nothing was proven"
    assert "database_unavailable" in worker.log()  # retried, not failed
    assert in_table(pg_url, upload_id) == (valid, valid)


@pytest.mark.slow
def test_the_demo_uses_postgres_when_the_database_url_is_set(tmp_path, pg_url):
    from tests.ops_fixtures import run_demo

    truncate(pg_url)
    out = run_demo(tmp_path, redis_db=8)  # NOTIFY_DATABASE_URL is this module's database
    text = out.stdout + out.stderr
    assert "PostgreSQL table notifications" in text
    assert "4,865 in the postgresql store" in text and "390 in the postgresql store" in text
    assert "ok: 4865 rows" in text  # the notifications report, read from the table
    assert "problem:" not in text
    assert table_rows(pg_url, "SELECT count(*), count(DISTINCT id) FROM notifications") == [
        (4865 + 390, 4865 + 390)
    ]
