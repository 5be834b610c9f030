"""The web app's side of the contract: typed functions that enqueue tasks by name.

The web app imports only this module (and Celery): never task code. Every call names its queue
explicitly, so routing does not depend on the web app's Celery configuration. Arguments are
checked here too, so a typo fails in the web app's request rather than in a worker later.

    from worker.client import NotifyClient
    client = NotifyClient()                      # or NotifyClient(app=your_celery_app)
    client.process_csv(service_id, upload_id, template_id=..., template_type="sms",
                       placeholders=["name"], notification_count=120)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from celery import Celery
from celery.result import AsyncResult

from storage.keys import isoformat, parse_timestamp, require_uuid
from worker.runtime import queues
from worker.runtime.settings import get_worker_settings

TemplateType = Literal["sms", "email", "letter"]
Postage = Literal["first", "second", "economy", "europe", "rest-of-world"]
CsvSource = Literal["csv-upload", "contact-list"]


class NotifyClient:
    def __init__(self, app: Celery | None = None) -> None:
        if app is None:
            from worker.runtime.app import app as default_app

            app = default_app
        self.app = app

    def _send(self, name: str, queue: str, kwargs: dict[str, Any]) -> AsyncResult:
        return self.app.send_task(name, kwargs=kwargs, queue=queue)

    # --- CSV batches -------------------------------------------------------------------------

    def process_csv(
        self,
        service_id: str,
        upload_id: str,
        *,
        template_id: str,
        template_type: TemplateType,
        placeholders: Sequence[str] = (),
        allow_international_sms: bool = False,
        allow_international_letters: bool = False,
        allow_sms_to_uk_landline: bool = False,
        sender_id: str | None = None,
        source: CsvSource = "csv-upload",
        scheduled_for: datetime | str | None = None,
        notification_count: int | None = None,
    ) -> AsyncResult:
        """Enqueue ``notify.csv.process_batch``.

        ``notification_count`` (the web app's count from the upload) picks the queue: a job
        above ``NOTIFY_BULK_THRESHOLD_ROWS`` runs on ``csv-batches-bulk`` so it never delays
        small jobs. A job to run now is first recorded as ``queued`` in the ``notify:`` state
        (``REDIS_URL``), so ``job_progress`` shows it at once and ``notify.jobs.reconcile``
        sends it again if the broker loses the message.
        """
        require_uuid(service_id, "service_id")
        require_uuid(upload_id, "upload_id")
        require_uuid(template_id, "template_id")
        if template_type not in ("sms", "email", "letter"):
            raise ValueError(f"template_type must be sms, email or letter, not {template_type!r}")
        if source not in ("csv-upload", "contact-list"):
            raise ValueError(f"source must be csv-upload or contact-list, not {source!r}")
        kwargs: dict[str, Any] = {
            "service_id": service_id,
            "upload_id": upload_id,
            "template": {
                "id": template_id,
                "type": template_type,
                "placeholders": list(placeholders),
            },
            "options": {
                "allow_international_sms": bool(allow_international_sms),
                "allow_international_letters": bool(allow_international_letters),
                "allow_sms_to_uk_landline": bool(allow_sms_to_uk_landline),
            },
            "source": source,
        }
        if sender_id is not None:
            kwargs["sender_id"] = require_uuid(sender_id, "sender_id")
        if scheduled_for is not None:
            kwargs["scheduled_for"] = isoformat(parse_timestamp(scheduled_for, "scheduled_for"))
        big = (
            notification_count is not None
            and notification_count > get_worker_settings().bulk_threshold_rows
        )
        queue = queues.CSV_BATCHES_BULK if big else queues.CSV_BATCHES
        if scheduled_for is None:
            # Recorded before the message exists, so a message the broker loses is sent again
            # by the reconciler (a scheduled job is recorded by the worker that schedules it).
            from tasks.csv_batches.state import record_queued

            record_queued(upload_id, kwargs, queue)
        return self._send(queues.CSV_PROCESS_BATCH, queue, kwargs)

    def cancel_csv_job(self, service_id: str, upload_id: str) -> AsyncResult:
        kwargs = {
            "service_id": require_uuid(service_id, "service_id"),
            "upload_id": require_uuid(upload_id, "upload_id"),
        }
        return self._send(queues.CSV_CANCEL, queues.CSV_BATCHES, kwargs)

    def job_progress(self, upload_id: str) -> dict[str, Any] | None:
        """The job's counters from Redis in O(1) (no S3 call, no row scan); None if unknown."""
        from tasks.csv_batches.state import read_progress

        return read_progress(require_uuid(upload_id, "upload_id"))

    # --- letters -----------------------------------------------------------------------------

    def move_transient_letter(
        self,
        service_id: str,
        upload_id: str,
        *,
        reference: str,
        postage: Postage,
        created_at: datetime | str,
        backup: bool = False,
    ) -> AsyncResult:
        kwargs = {
            "service_id": require_uuid(service_id, "service_id"),
            "upload_id": require_uuid(upload_id, "upload_id"),
            "reference": reference,
            "postage": postage,
            "created_at": isoformat(parse_timestamp(created_at, "created_at"))
            if isinstance(created_at, datetime)
            else created_at,
            "backup": bool(backup),
        }
        return self._send(queues.LETTERS_MOVE_TRANSIENT, queues.LETTERS, kwargs)

    # --- reports -----------------------------------------------------------------------------

    def generate_report(
        self,
        report_request_id: str,
        service_id: str,
        kind: str,
        params: Mapping[str, Any] | None = None,
    ) -> AsyncResult:
        kwargs = {
            "report_request_id": require_uuid(report_request_id, "report_request_id"),
            "service_id": require_uuid(service_id, "service_id"),
            "kind": kind,
            "params": dict(params or {}),
        }
        return self._send(queues.REPORTS_GENERATE, queues.REPORTS, kwargs)

    # --- cleanup -----------------------------------------------------------------------------

    def sweep_bucket(
        self,
        bucket: str,
        *,
        dry_run: bool = True,
        max_deletions: int | None = None,
        as_of: datetime | str | None = None,
    ) -> AsyncResult:
        kwargs: dict[str, Any] = {"bucket": bucket, "dry_run": bool(dry_run)}
        if max_deletions is not None:
            kwargs["max_deletions"] = int(max_deletions)
        if as_of is not None:
            kwargs["as_of"] = isoformat(parse_timestamp(as_of, "as_of"))
        return self._send(queues.CLEANUP_SWEEP, queues.CLEANUP, kwargs)


def send_by_name(name: str, kwargs: Mapping[str, Any], *, app: Celery | None = None) -> AsyncResult:
    """Enqueue any task of the contract by name, on its own queue (used by ``enqueue``)."""
    client = NotifyClient(app)
    queue = queues.TASK_QUEUES.get(name)
    if name == queues.NOTIFICATIONS_SAVE_BATCH:
        queue = get_worker_settings().row_sink_queue
    if queue is None:
        known = ", ".join(sorted(queues.TASK_QUEUES))
        raise ValueError(f"unknown task {name!r}; known tasks: {known}")
    return client._send(name, queue, dict(kwargs))
