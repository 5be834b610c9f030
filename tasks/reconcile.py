"""``notify.jobs.reconcile``: re-drive jobs whose messages were lost or whose worker died.

The CSV workflow's recovery does the work (tasks/csv_batches/recovery.py): stale running jobs
resume from their checkpoint; queued jobs whose message was lost are sent again; finished jobs
whose sink batches the broker lost have their rows re-sent; lost schedules are rebuilt from the
objects' metadata. Letter moves, reports and cleanup sweeps whose worker stopped beating are
re-sent (worker/runtime/leases.py).
"""

from __future__ import annotations

from typing import Any

from worker.runtime import leases, queues
from worker.runtime.app import app


def reconcile(*, rebuild: bool | None = None) -> dict[str, Any]:
    """One pass over the job state. Idempotent: deterministic ids make a repeat harmless."""
    from tasks.csv_batches.recovery import reconcile as reconcile_csv_jobs

    result = reconcile_csv_jobs(rebuild=rebuild)
    # Letter moves, reports and cleanup sweeps whose worker machine stopped beating.
    resent = leases.resend_stale_tasks(app=app)
    result["tasks_resent"] = len(resent)
    if resent:
        result["task_ids"] = resent
    return result


@app.task(name=queues.JOBS_RECONCILE, queue=queues.PERIODIC)
def reconcile_jobs() -> dict[str, Any]:
    return reconcile()
