"""``NotifyClient``: typed functions that send the workers' tasks by name.

Every call checks its arguments first, names its queue explicitly (with the deployment's queue
prefix in front), sends JSON only, and can carry the web request's id in the
``notify_request_id`` message header, which the workers put on every log line of the task.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from notify_worker_client import names, redis_urls, state
from notify_worker_client import validation as check
from notify_worker_client.validation import InvalidArgument

if TYPE_CHECKING:
    from celery import Celery
    from celery.result import AsyncResult

DEFAULT_BULK_THRESHOLD_ROWS = 5_000

# For type checkers; the values are checked at run time as well.
TemplateType = Literal["sms", "email", "letter"]
CsvSource = Literal["csv-upload", "contact-list"]
Postage = Literal["first", "second", "economy", "europe", "rest-of-world"]


class NotifyClient:
    """Send notify-worker tasks from the web app.

    ``app``: the web app's own Celery app (any configuration: the queue and serializer are set
    per message), or ``broker_url`` (and optionally ``result_backend``) to make a small one.

    ``queue_prefix``: the deployment's prefix, the workers' ``NOTIFY_QUEUE_PREFIX``.

    ``state_redis``: the workers' state Redis (their ``NOTIFY_STATE_REDIS_URL``, by default their
    ``REDIS_URL``), as a URL or a ``redis.Redis``. When given, ``process_csv`` records a job to
    run now as ``queued`` there first, so the workers send it again if the broker loses the
    message. Never the web app's own cache. Needs the ``redis`` extra. A URL (and
    ``broker_url``) takes the workers' forms, ``redis://``, ``rediss://`` and ``sentinel://``,
    with their variables ``NOTIFY_REDIS_CA_FILE``, ``NOTIFY_REDIS_SENTINEL_MASTER``,
    ``NOTIFY_REDIS_SENTINEL_PASSWORD`` and ``NOTIFY_REDIS_SENTINEL_TLS`` read from the
    environment (``notify_worker_client.redis_urls``).

    ``bulk_threshold_rows``: the workers' ``NOTIFY_BULK_THRESHOLD_ROWS``; a job with more rows
    goes to the bulk queue so it never delays small jobs.

    ``report_kinds``: plug-in report kinds the deployment's workers have, on top of the built-in
    ones.
    """

    def __init__(
        self,
        app: Celery | None = None,
        *,
        broker_url: str | None = None,
        result_backend: str | None = None,
        queue_prefix: str = "",
        state_redis: Any = None,
        bulk_threshold_rows: int = DEFAULT_BULK_THRESHOLD_ROWS,
        row_sink_queue: str = names.DATABASE_TASKS,
        report_kinds: Iterable[str] = (),
        state_ttl_seconds: int = state.DEFAULT_STATE_TTL_SECONDS,
    ) -> None:
        if app is None:
            if not broker_url:
                raise InvalidArgument("app", "give the web app's Celery app or a broker_url")
            app = _make_app(broker_url, result_backend)
        self.app = app
        self.queue_prefix = check.queue_prefix(queue_prefix)
        self.bulk_threshold_rows = check.positive_int(bulk_threshold_rows, "bulk_threshold_rows")
        self.row_sink_queue = row_sink_queue
        self.report_kinds = tuple(report_kinds)
        self.state_ttl_seconds = check.positive_int(state_ttl_seconds, "state_ttl_seconds")
        self.state_redis = _state_client(state_redis)

    # --- sending -----------------------------------------------------------------------------

    def queue(self, base_name: str) -> str:
        """The queue's name in this deployment (the prefix in front)."""
        return self.queue_prefix + base_name

    def _send(
        self, name: str, base_queue: str, kwargs: dict[str, Any], request_id: str | None
    ) -> AsyncResult:
        headers = None
        if request_id is not None:
            headers = {names.REQUEST_ID_HEADER: check.request_id(request_id)}
        return self.app.send_task(
            name,
            kwargs=kwargs,
            queue=self.queue(base_queue),
            serializer="json",
            headers=headers,
        )

    def send_by_name(
        self, name: str, kwargs: Mapping[str, Any], *, request_id: str | None = None
    ) -> AsyncResult:
        """Send any task of the contract by name, on its own queue, with the given arguments
        as they are (the typed functions below check them; this only checks they are JSON)."""
        if name == names.NOTIFICATIONS_SAVE_BATCH:
            base_queue = self.row_sink_queue
        elif name in names.TASK_QUEUES:
            base_queue = names.TASK_QUEUES[name]
        else:
            known = ", ".join(sorted(names.TASK_QUEUES))
            raise InvalidArgument("name", f"unknown task {name!r}; known tasks: {known}")
        return self._send(name, base_queue, check.json_object(kwargs, "kwargs"), request_id)

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
        request_id: str | None = None,
    ) -> AsyncResult:
        """Send ``notify.csv.process_batch`` (``template_type``: sms, email or letter;
        ``source``: csv-upload or contact-list; ``scheduled_for``: at most 7 days ahead).

        ``notification_count`` (the web app's count from the upload) picks the queue: above
        ``bulk_threshold_rows`` the job goes to the bulk queue.
        """
        kwargs: dict[str, Any] = {
            "service_id": check.uuid_arg(service_id, "service_id"),
            "upload_id": check.uuid_arg(upload_id, "upload_id"),
            "template": {
                "id": check.uuid_arg(template_id, "template_id"),
                "type": check.one_of(template_type, names.TEMPLATE_TYPES, "template_type"),
                "placeholders": check.placeholder_names(placeholders),
            },
            "options": {
                "allow_international_sms": check.flag(
                    allow_international_sms, "allow_international_sms"
                ),
                "allow_international_letters": check.flag(
                    allow_international_letters, "allow_international_letters"
                ),
                "allow_sms_to_uk_landline": check.flag(
                    allow_sms_to_uk_landline, "allow_sms_to_uk_landline"
                ),
            },
            "source": check.one_of(source, names.CSV_SOURCES, "source"),
        }
        if sender_id is not None:
            kwargs["sender_id"] = check.uuid_arg(sender_id, "sender_id")
        if scheduled_for is not None:
            kwargs["scheduled_for"] = check.scheduled_for(scheduled_for)
        big = False
        if notification_count is not None:
            count = check.positive_int(notification_count, "notification_count", minimum=0)
            big = count > self.bulk_threshold_rows
        base_queue = names.CSV_BATCHES_BULK if big else names.CSV_BATCHES
        if request_id is not None:
            check.request_id(request_id)  # before anything is written
        if scheduled_for is None and self.state_redis is not None:
            # Recorded before the message exists, so one the broker loses is sent again by the
            # workers' reconciler (a scheduled job is recorded by the worker that schedules it).
            state.record_queued(
                self.state_redis,
                kwargs["upload_id"],
                kwargs,
                self.queue(base_queue),
                ttl_seconds=self.state_ttl_seconds,
            )
        return self._send(names.CSV_PROCESS_BATCH, base_queue, kwargs, request_id)

    def cancel_csv_job(
        self, service_id: str, upload_id: str, *, request_id: str | None = None
    ) -> AsyncResult:
        """Send ``notify.csv.cancel``: cancels a scheduled job that has not started."""
        kwargs = {
            "service_id": check.uuid_arg(service_id, "service_id"),
            "upload_id": check.uuid_arg(upload_id, "upload_id"),
        }
        return self._send(names.CSV_CANCEL, names.CSV_BATCHES, kwargs, request_id)

    def job_state(self, upload_id: str) -> dict[str, str] | None:
        """The job's raw record in the workers' Redis (``state_redis``), or None if unknown."""
        if self.state_redis is None:
            raise InvalidArgument("state_redis", "job_state needs the workers' state Redis")
        return state.read_job(self.state_redis, check.uuid_arg(upload_id, "upload_id"))

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
        request_id: str | None = None,
    ) -> AsyncResult:
        """Send ``notify.letters.move_transient`` (``postage``: first, second, economy, europe
        or rest-of-world; ``reference``: 1-32 of A-Z and 0-9)."""
        moment = check.timestamp(created_at, "created_at")
        kwargs = {
            "service_id": check.uuid_arg(service_id, "service_id"),
            "upload_id": check.uuid_arg(upload_id, "upload_id"),
            "reference": check.letter_reference(reference),
            "postage": check.one_of(postage, names.POSTAGE_CLASSES, "postage"),
            # Text goes as it is (the workers parse it the same way); a datetime as UTC text.
            "created_at": created_at.strip()
            if isinstance(created_at, str)
            else check.isoformat(moment),
            "backup": check.flag(backup, "backup"),
        }
        return self._send(names.LETTERS_MOVE_TRANSIENT, names.LETTERS, kwargs, request_id)

    # --- reports -----------------------------------------------------------------------------

    def generate_report(
        self,
        report_request_id: str,
        service_id: str,
        kind: str,
        params: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
    ) -> AsyncResult:
        """Send ``notify.reports.generate`` (``kind``: a built-in kind or one of the client's
        ``report_kinds``; ``params`` a JSON object the kind checks on the worker)."""
        kwargs = {
            "report_request_id": check.uuid_arg(report_request_id, "report_request_id"),
            "service_id": check.uuid_arg(service_id, "service_id"),
            "kind": check.report_kind(kind, self.report_kinds),
            "params": check.json_object(params, "params"),
        }
        return self._send(names.REPORTS_GENERATE, names.REPORTS, kwargs, request_id)

    # --- cleanup -----------------------------------------------------------------------------

    def sweep_bucket(
        self,
        bucket: str,
        *,
        dry_run: bool = True,
        max_deletions: int | None = None,
        as_of: datetime | str | None = None,
        request_id: str | None = None,
    ) -> AsyncResult:
        """Send ``notify.cleanup.sweep`` for one bucket purpose (a dry run unless told)."""
        kwargs: dict[str, Any] = {
            "bucket": check.one_of(bucket, names.BUCKET_PURPOSES, "bucket"),
            "dry_run": check.flag(dry_run, "dry_run"),
        }
        if max_deletions is not None:
            kwargs["max_deletions"] = check.positive_int(max_deletions, "max_deletions")
        if as_of is not None:
            kwargs["as_of"] = check.isoformat(check.timestamp(as_of, "as_of"))
        return self._send(names.CLEANUP_SWEEP, names.CLEANUP, kwargs, request_id)

    # --- periodic ----------------------------------------------------------------------------

    def reconcile_jobs(self, *, request_id: str | None = None) -> AsyncResult:
        """Send ``notify.jobs.reconcile`` now (beat also sends it every minute)."""
        return self._send(names.JOBS_RECONCILE, names.PERIODIC, {}, request_id)


def _make_app(broker_url: str, result_backend: str | None) -> Celery:
    from celery import Celery

    # The workers' URL forms: a sentinel:// broker needs the master's name (and the sentinels'
    # password, TLS), a rediss:// one the CA; from the same environment variables.
    results: dict[str, Any] = {}
    if result_backend and result_backend.split(":", 1)[0] in ("redis", "rediss", "sentinel"):
        results = redis_urls.celery_options(result_backend, results=True)
        result_backend = redis_urls.celery_url(result_backend, "result_backend")
    app = Celery(
        "notify-worker-client", broker=redis_urls.celery_url(broker_url), backend=result_backend
    )
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        broker_connection_retry_on_startup=True,
        **redis_urls.celery_options(broker_url),
        **results,
    )
    return app


def _state_client(value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    return redis_urls.make_client(value)
