"""The ``notify_request_id`` header reaches every log line of the task it started, through a real
(thread) worker, and a CSV job passes it on to the sink batches it fans out."""

from __future__ import annotations

import logging
import uuid

import pytest
from celery import signals

from tests.csv_fixtures import SERVICE_ID, csv_text, sms_rows, upload, wait_for
from worker.runtime import queues
from worker.runtime.app import app

pytestmark = pytest.mark.integration


@app.task(name="tests.ops.request_echo", queue=queues.PERIODIC)
def request_echo(service_id: str) -> dict:
    logging.getLogger("tasks.test").info("first line")
    logging.getLogger("tasks.test").warning("second line")
    return {"status": "ok"}


def test_every_line_of_the_task_carries_the_request_id(celery_worker, redis_client, captured):
    service_id = str(uuid.uuid4())
    sent = [
        request_echo.apply_async(kwargs={"service_id": service_id}, headers=headers)
        for headers in (
            {queues.REQUEST_ID_HEADER: "req-42"},
            None,
            {queues.REQUEST_ID_HEADER: "forged\n2026-01-01 INFO fake line"},
        )
    ]
    for result in sent:
        assert result.get(timeout=30) == {"status": "ok"}
    for result, expected in zip(sent, ("req-42", "-", "invalid"), strict=True):
        lines = [r for r in captured.records if r.task_id == result.id]
        assert [r.getMessage() for r in lines] == ["first line", "second line"]
        assert all(r.request_id == expected for r in lines), expected
        assert all(r.service_id == service_id for r in lines)


def test_a_csv_job_passes_its_request_id_to_its_sink_batches(celery_worker, s3, redis_client):
    from worker.client import NotifyClient

    seen: dict[str, list] = {}

    def record(sender=None, task=None, **_: object) -> None:
        seen.setdefault(task.name, []).append(task.request.get(queues.REQUEST_ID_HEADER))

    signals.task_prerun.connect(record, weak=False)
    try:
        upload_id = upload(s3, csv_text(["phone number", "name"], sms_rows(2500)))
        job = NotifyClient().process_csv(
            SERVICE_ID,
            upload_id,
            template_id=str(uuid.uuid4()),
            template_type="sms",
            placeholders=["name"],
            request_id="req-csv-77",
        )
        assert job.get(timeout=60)["status"] == "ok"
        sink = queues.NOTIFICATIONS_SAVE_BATCH
        wait_for(lambda: len(seen.get(sink, [])) >= 3, 30, 0.1)
    finally:
        signals.task_prerun.disconnect(record)
    assert seen[queues.CSV_PROCESS_BATCH] == ["req-csv-77"]
    assert seen[sink] == ["req-csv-77"] * 3  # 2,500 rows: three batches
