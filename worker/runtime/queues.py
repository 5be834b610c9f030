"""Queue and task names: the web app's contract (SPEC §3), in one place."""

from __future__ import annotations

CSV_BATCHES = "csv-batches"
CSV_BATCHES_BULK = "csv-batches-bulk"
LETTERS = "letters"
REPORTS = "reports"
CLEANUP = "cleanup"
PERIODIC = "periodic"
DATABASE_TASKS = "database-tasks"  # the default row sink queue
BULK_SUFFIX = "-bulk"


def bulk_queue(queue: str) -> str:
    """The queue a big job's messages go to, so small jobs never wait behind it."""
    return queue if queue.endswith(BULK_SUFFIX) else queue + BULK_SUFFIX


# Task names are stable: the web app sends them by name.
CSV_PROCESS_BATCH = "notify.csv.process_batch"
CSV_CANCEL = "notify.csv.cancel"
CSV_RELEASE_DUE = "notify.csv.release_due"
LETTERS_MOVE_TRANSIENT = "notify.letters.move_transient"
LETTERS_SWEEP_TRANSIENT = "notify.letters.sweep_transient"
REPORTS_GENERATE = "notify.reports.generate"
CLEANUP_SWEEP = "notify.cleanup.sweep"
JOBS_RECONCILE = "notify.jobs.reconcile"
NOTIFICATIONS_SAVE_BATCH = "notify.notifications.save_batch"

TASK_QUEUES: dict[str, str] = {
    CSV_PROCESS_BATCH: CSV_BATCHES,
    CSV_CANCEL: CSV_BATCHES,
    CSV_RELEASE_DUE: PERIODIC,
    LETTERS_MOVE_TRANSIENT: LETTERS,
    LETTERS_SWEEP_TRANSIENT: PERIODIC,
    REPORTS_GENERATE: REPORTS,
    CLEANUP_SWEEP: CLEANUP,
    JOBS_RECONCILE: PERIODIC,
    NOTIFICATIONS_SAVE_BATCH: DATABASE_TASKS,
}


def all_queues(sink_queue: str = DATABASE_TASKS) -> list[str]:
    """Every queue the default worker consumes (the built-in sink's queues included)."""
    queues = [CSV_BATCHES, CSV_BATCHES_BULK, LETTERS, REPORTS, CLEANUP, PERIODIC]
    return [*queues, sink_queue, bulk_queue(sink_queue)]
