"""Task and queue names: the contract between the web app and the workers.

Queue names here are the base names; a deployment's queue prefix (``queue_prefix``) goes in
front of each of them, on the workers and in the client alike.
"""

from __future__ import annotations

# Queues (base names).
CSV_BATCHES = "csv-batches"
CSV_BATCHES_BULK = "csv-batches-bulk"
LETTERS = "letters"
REPORTS = "reports"
CLEANUP = "cleanup"
PERIODIC = "periodic"
DATABASE_TASKS = "database-tasks"  # the built-in row sink's queue
BULK_SUFFIX = "-bulk"

# Task names: stable, sent by name.
CSV_PROCESS_BATCH = "notify.csv.process_batch"
CSV_CANCEL = "notify.csv.cancel"
CSV_RELEASE_DUE = "notify.csv.release_due"
LETTERS_MOVE_TRANSIENT = "notify.letters.move_transient"
LETTERS_SWEEP_TRANSIENT = "notify.letters.sweep_transient"
REPORTS_GENERATE = "notify.reports.generate"
CLEANUP_SWEEP = "notify.cleanup.sweep"
JOBS_RECONCILE = "notify.jobs.reconcile"
NOTIFICATIONS_SAVE_BATCH = "notify.notifications.save_batch"

# Each task's queue (base name).
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

# The message header that carries the web request's id into the task's log lines.
REQUEST_ID_HEADER = "notify_request_id"

# Argument values the workers accept.
TEMPLATE_TYPES = ("sms", "email", "letter")
CSV_SOURCES = ("csv-upload", "contact-list")
POSTAGE_CLASSES = ("first", "second", "economy", "europe", "rest-of-world")
REPORT_KINDS = ("job-outcome", "uploads", "storage-usage", "notifications")
BUCKET_PURPOSES = (
    "csv-upload",
    "contact-list",
    "logo",
    "mou",
    "transient-letters",
    "letter-backups",
    "letter-attachments",
    "report-downloads",
    "email-attachments",
    "letters-pdf",
)
