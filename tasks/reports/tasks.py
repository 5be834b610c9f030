"""Celery tasks of the reports workflow (thin wrappers over the core)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from celery import Task, signals

from storage.errors import ConfigurationError
from tasks.reports.generate import generate_report
from tasks.reports.kinds import registry
from worker.runtime import queues
from worker.runtime.app import app

logger = logging.getLogger(__name__)


@app.task(name=queues.REPORTS_GENERATE, queue=queues.REPORTS, bind=True)
def generate(
    self: Task,
    report_request_id: str,
    service_id: str,
    kind: str,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write one report; PROGRESS state carries ``{"rows": n}`` while it runs."""

    def progress(rows: int) -> None:
        if self.request.id and not self.request.called_directly:
            self.update_state(state="PROGRESS", meta={"rows": rows, "kind": kind})

    return generate_report(report_request_id, service_id, kind, params, progress=progress)


@signals.worker_init.connect
def _load_report_plugins(**_: Any) -> None:
    # A broken NOTIFY_REPORT_SOURCES should be seen at start-up, not on the first report; it
    # only affects reports, so it is logged rather than stopping the whole worker.
    try:
        registry()
    except ConfigurationError as error:
        logger.error("report plug-ins not loaded: %s", error.message)
