"""The web app's client, with this repository's defaults: ``notify_worker_client`` (``client/``).

The web app installs the client package alone (``pip install ./client``, see docs/tasks.md) and
passes its own Celery app and settings. Inside this repository (the CLI, the demo, backfills,
tests) ``from worker.client import NotifyClient`` gives the same class with the workers' own
defaults: their Celery app, ``NOTIFY_QUEUE_PREFIX``, ``NOTIFY_BULK_THRESHOLD_ROWS``, the row sink
queue, plug-in report kinds, and the workers' state Redis for the "queued" record.

    from worker.client import NotifyClient
    client = NotifyClient()                      # or NotifyClient(app=your_celery_app)
    client.process_csv(service_id, upload_id, template_id=..., template_type="sms",
                       placeholders=["name"], notification_count=120)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from notify_worker_client import InvalidArgument, names
from notify_worker_client import NotifyClient as _PackageClient
from notify_worker_client.validation import uuid_arg

from worker.runtime import queues
from worker.runtime.settings import get_worker_settings

__all__ = ["InvalidArgument", "NotifyClient", "names", "send_by_name"]


def plugin_report_kinds(environ: Mapping[str, str] | None = None) -> list[str]:
    """Names of the plug-in report kinds configured here (``NOTIFY_REPORT_SOURCES``), read
    without importing them (the workers check them when they load them)."""
    env = os.environ if environ is None else environ
    spec = env.get("NOTIFY_REPORT_SOURCES") or ""
    return [entry.partition("=")[0].strip() for entry in spec.split(",") if entry.strip()]


class NotifyClient(_PackageClient):
    """``notify_worker_client.NotifyClient`` with the workers' settings as defaults."""

    def __init__(self, app: Celery | None = None, **options: Any) -> None:
        if app is None and "broker_url" not in options:
            from worker.runtime.app import app as default_app

            app = default_app
        settings = get_worker_settings()
        if "state_redis" not in options:
            from worker.runtime.redis_state import get_redis

            options["state_redis"] = get_redis()
        options.setdefault("queue_prefix", queues.PREFIX)
        options.setdefault("bulk_threshold_rows", settings.bulk_threshold_rows)
        # The client puts the prefix in front itself: give it the sink queue's base name.
        sink_queue = settings.row_sink_queue
        if queues.PREFIX and sink_queue.startswith(queues.PREFIX):
            sink_queue = sink_queue[len(queues.PREFIX) :]
        options.setdefault("row_sink_queue", sink_queue)
        options.setdefault("report_kinds", plugin_report_kinds())
        options.setdefault("state_ttl_seconds", settings.state_ttl_seconds)
        super().__init__(app, **options)

    def job_progress(self, upload_id: str) -> dict[str, Any] | None:
        """The job's counters from Redis in O(1) (no S3 call, no row scan); None if unknown."""
        from tasks.csv_batches.state import read_progress

        return read_progress(uuid_arg(upload_id, "upload_id"))


def send_by_name(
    name: str,
    kwargs: Mapping[str, Any],
    *,
    app: Celery | None = None,
    request_id: str | None = None,
) -> AsyncResult:
    """Send any task of the contract by name, on its own queue (used by ``enqueue``)."""
    return NotifyClient(app).send_by_name(name, kwargs, request_id=request_id)
