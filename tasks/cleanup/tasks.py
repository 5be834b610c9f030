"""Celery tasks of the cleanup workflow (thin wrappers over the core)."""

from __future__ import annotations

from typing import Any

from tasks.cleanup.sweep import sweep
from worker.runtime import queues
from worker.runtime.app import app


@app.task(name=queues.CLEANUP_SWEEP, queue=queues.CLEANUP)
def sweep_bucket(
    *,
    bucket: str,
    dry_run: bool = True,
    max_deletions: int | None = None,
    as_of: str | None = None,
) -> dict[str, Any]:
    """``notify.cleanup.sweep``: a dry run unless ``dry_run`` is false (beat passes false)."""
    return sweep(bucket, dry_run=dry_run, max_deletions=max_deletions, as_of=as_of).as_dict()
