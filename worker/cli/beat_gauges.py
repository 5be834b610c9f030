"""Gauges beat's exporter reads from the workflows' own state (registered by
``notify-worker beat``; the runtime layer cannot import the workflows itself)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

JOB_STATUSES = ("scheduled", "queued", "running")


def job_gauges() -> Iterable[Any]:
    """CSV jobs by status and the stuck ones, from the ``notify:`` pending index: one ZRANGE
    and one pipelined HGETALL per pending job, never a scan of the keyspace."""
    from prometheus_client.core import GaugeMetricFamily

    from tasks.csv_batches.state import status_summary

    summary = status_summary()
    jobs = GaugeMetricFamily(
        "notify_jobs", "CSV jobs scheduled, queued or running.", labels=["status"]
    )
    for status in JOB_STATUSES:
        jobs.add_metric([status], summary.get(status, 0))
    yield jobs
    yield GaugeMetricFamily(
        "notify_jobs_stuck",
        "Running CSV jobs whose heartbeat is older than NOTIFY_JOB_STALE_SECONDS.",
        value=summary.get("stuck", 0),
    )


def register() -> None:
    from worker.runtime import metrics

    metrics.add_gauge_source(job_gauges)
