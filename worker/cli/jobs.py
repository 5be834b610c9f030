"""``notify-worker jobs``: show, list and cancel CSV jobs.

``show`` and ``list`` read the Redis job state only (O(1) per job, no S3 call); ``show
--service-id`` falls back to the CSV object's metadata when Redis no longer has the job. With
the PostgreSQL store on, ``show`` counts the job's stored rows in the table (one indexed count).
"""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from worker.cli.output import console, print_json

_COUNTERS = ("total", "dispatched", "invalid", "stored", "checkpoint")
_TIMES = ("scheduled_for", "queued_at", "started_at", "updated_at", "finished_at")


def _from_metadata(service_id: str, upload_id: str) -> dict[str, Any] | None:
    """The outcome recorded on the object (csv-upload, then contact-list), or None."""
    from storage.keys import csv_upload_key
    from storage.objects import head_or_none
    from storage.settings import get_settings
    from tasks.csv_batches.spec import SOURCES

    key = csv_upload_key(service_id, upload_id)
    for source in SOURCES:
        info = head_or_none(get_settings().bucket(source), key)
        if info is None:
            continue
        meta = info.metadata

        def number(name: str, meta: dict[str, str] = meta) -> int | None:
            value = meta.get(name)
            return int(value) if value and value.isdigit() else None

        status = meta.get("processing_status") or (
            "scheduled (Redis state lost)" if meta.get("scheduled_for") else "not processed"
        )
        return {
            "upload_id": upload_id,
            "service_id": service_id,
            "source": source,
            "status": status,
            "total": number("processing_rows_total"),
            "dispatched": number("processing_rows_dispatched"),
            "invalid": number("processing_rows_invalid"),
            "scheduled_for": meta.get("scheduled_for"),
            "finished_at": meta.get("processing_finished_at"),
            "error_code": meta.get("processing_error_code"),
            "uploaded_at": meta.get("uploaded_at"),
            "from": "object metadata",
        }
    return None


@click.group("jobs")
def jobs_group() -> None:
    """CSV jobs: progress, the running/scheduled/stuck list, cancelling scheduled jobs."""


@jobs_group.command("show")
@click.argument("upload_id")
@click.option("--service-id", help="Read the object's metadata if Redis has no state.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def jobs_show(upload_id: str, service_id: str | None, as_json: bool) -> None:
    """Status and counters of one job."""
    from storage.keys import require_uuid
    from tasks.csv_batches.state import read_progress
    from worker.runtime.database import database_enabled

    require_uuid(upload_id, "upload_id")
    if service_id is not None:
        require_uuid(service_id, "service_id")
    progress = read_progress(upload_id)
    if progress is not None:
        progress["from"] = "redis"
    elif service_id:
        progress = _from_metadata(service_id, upload_id)
    if progress is None:
        hint = "" if service_id else " Pass --service-id to look at the CSV object itself."
        raise click.ClickException(f"no job known for upload {upload_id}.{hint}")
    if database_enabled():
        # The rows really stored: the table's count, not the Redis progress counter.
        from tasks.csv_batches.store import notification_store

        progress["stored"] = notification_store().stored_count(upload_id)
        progress["stored_in"] = "postgresql"
    if as_json:
        print_json(progress)
        return
    table = Table(show_header=False, show_edge=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for name in ("upload_id", "service_id", "source", "status", *_COUNTERS, *_TIMES):
        if progress.get(name) not in (None, ""):
            table.add_row(name, str(progress[name]))
    if progress.get("stuck"):
        table.add_row("stuck", "yes: no heartbeat for NOTIFY_JOB_STALE_SECONDS")
    for name in ("error_code", "error_message", "uploaded_at", "from", "stored_in"):
        if progress.get(name):
            table.add_row(name, str(progress[name]))
    console.print(table)


@jobs_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def jobs_list(as_json: bool) -> None:
    """Jobs that are running (stuck ones flagged), queued or scheduled."""
    from tasks.csv_batches.state import list_jobs

    jobs = sorted(list_jobs(), key=lambda j: (j["status"] or "", j["upload_id"]))
    if as_json:
        print_json(jobs)
        return
    if not jobs:
        console.print("no running, queued or scheduled jobs")
        return
    # One line per job: upload ids are long and must not be cut by a narrow terminal.
    for job in jobs:
        status = "stuck" if job["stuck"] else job["status"]
        when = (
            f"due {job['scheduled_for']}"
            if job["status"] == "scheduled"
            else f"updated {job['updated_at'] or '-'}"
        )
        console.print(
            f"{job['upload_id']}  {status:<9}  service {job['service_id'] or '-'}  "
            f"rows {job['dispatched']:,}/{job['total']:,} sent, {job['invalid']:,} invalid, "
            f"{job['stored']:,} stored  {when}",
            soft_wrap=True,
        )


@jobs_group.command("cancel")
@click.argument("upload_id")
@click.option("--service-id", help="Needed when Redis no longer knows the job.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def jobs_cancel(upload_id: str, service_id: str | None, as_json: bool) -> None:
    """Cancel a scheduled job that has not started (in-process, like the task)."""
    from storage.keys import require_uuid
    from tasks.csv_batches.scheduling import cancel_job
    from tasks.csv_batches.state import load_job

    require_uuid(upload_id, "upload_id")
    if service_id is None:
        state = load_job(upload_id)
        service_id = state.service_id if state else None
        if not service_id:
            raise click.ClickException(
                f"Redis does not know upload {upload_id}: pass --service-id."
            )
    result = cancel_job(service_id, upload_id)
    if as_json:
        print_json(result)
    elif result["status"] == "ok":
        console.print(f"cancelled scheduled job {upload_id}")
    else:
        console.print(f"job {upload_id} was already cancelled")


COMMANDS = [jobs_group]
