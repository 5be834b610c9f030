"""Celery tasks of the CSV batches workflow: thin wrappers over the plain-function cores."""

from __future__ import annotations

import logging
from typing import Any

from tasks.csv_batches import fairness, processing, scheduling
from tasks.csv_batches.sink import save_batch_task
from tasks.csv_batches.spec import JobSpec
from worker.runtime import queues
from worker.runtime.app import app

logger = logging.getLogger(__name__)

__all__ = ["cancel", "process_batch", "release_due", "save_batch_task"]


@app.task(name=queues.CSV_PROCESS_BATCH, queue=queues.CSV_BATCHES, bind=True)
def process_batch(
    self: Any,
    service_id: str,
    upload_id: str,
    template: dict[str, Any],
    options: dict[str, bool] | None = None,
    sender_id: str | None = None,
    source: str = "csv-upload",
    scheduled_for: str | None = None,
) -> dict[str, Any]:
    spec = JobSpec.from_kwargs(
        service_id=service_id,
        upload_id=upload_id,
        template=template,
        options=options,
        sender_id=sender_id,
        source=source,
    )
    # The queue it came on is where the reconciler sends it again (bulk stays bulk).
    queue = (self.request.delivery_info or {}).get("routing_key")
    try:
        return processing.process_job(spec, scheduled_for=scheduled_for, queue=queue)
    except fairness.Deferred as deferred:
        logger.info("the service's allowance on %s is used: job moved to %s", queue, deferred.queue)
        # Its service has used its allowance on this lane: the same message (same task id,
        # so the sender's result handle gets the job's result) goes to the bulk lane.
        kwargs = spec.task_kwargs()
        if scheduled_for is not None:
            kwargs["scheduled_for"] = scheduled_for
        return self.replace(
            self.signature(kwargs=kwargs, queue=deferred.queue, priority=fairness.DEFERRED_PRIORITY)
        )


@app.task(name=queues.CSV_CANCEL, queue=queues.CSV_BATCHES)
def cancel(service_id: str, upload_id: str) -> dict[str, Any]:
    return scheduling.cancel_job(service_id, upload_id)


@app.task(name=queues.CSV_RELEASE_DUE, queue=queues.PERIODIC)
def release_due() -> dict[str, Any]:
    return scheduling.release_due()
