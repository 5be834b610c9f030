"""``notify.jobs.reconcile``: re-drive jobs whose messages were lost or whose worker died.

The CSV workflow plugs its recovery in here (stale running jobs, lost schedules).
"""

from __future__ import annotations

from typing import Any

from worker import queues
from worker.app import app


def reconcile() -> dict[str, Any]:
    """One pass over the job state. Idempotent: deterministic ids make a repeat harmless."""
    return {"status": "ok", "resumed": 0, "rescheduled": 0}


@app.task(name=queues.JOBS_RECONCILE, queue=queues.PERIODIC)
def reconcile_jobs() -> dict[str, Any]:
    return reconcile()
