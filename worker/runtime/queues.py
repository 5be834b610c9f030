"""Queue and task names: the web app's contract, in one place.

The task names come from the web app's client package (``notify_worker_client.names``); its
queue names are base names, and a unit test compares them with these so they cannot drift apart.

Each queue gets the deployment's ``NOTIFY_QUEUE_PREFIX`` (default empty) in front, read once per
process: workers, beat, the sink and the bulk queues all use the prefixed names below, so several
environments can share one broker. The client takes the same prefix (``queue_prefix``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from storage.errors import ConfigurationError

PREFIX_VAR = "NOTIFY_QUEUE_PREFIX"
_PREFIX_RE = re.compile(r"[A-Za-z0-9._-]{0,64}")


def queue_prefix(environ: Mapping[str, str] | None = None) -> str:
    """The deployment's queue prefix (``NOTIFY_QUEUE_PREFIX``), checked."""
    env = os.environ if environ is None else environ
    prefix = (env.get(PREFIX_VAR) or "").strip()
    if not _PREFIX_RE.fullmatch(prefix):
        raise ConfigurationError(
            f"{PREFIX_VAR} must be at most 64 of A-Z a-z 0-9 . _ -, got {prefix[:80]!r}."
        )
    return prefix


def _prefix_at_import() -> str:
    try:
        return queue_prefix()
    except ConfigurationError:
        # Reported where the settings are read (WorkerSettings checks the prefix too), so the
        # command line and the worker say so clearly instead of failing on an import.
        return ""


PREFIX = _prefix_at_import()


def prefixed(name: str, prefix: str | None = None) -> str:
    """A base queue name as this deployment calls it (the prefix, then the name)."""
    return (PREFIX if prefix is None else prefix) + name


# Base names (without the prefix): the contract.
BASE_QUEUES = {
    "CSV_BATCHES": "csv-batches",
    "CSV_BATCHES_BULK": "csv-batches-bulk",
    "LETTERS": "letters",
    "REPORTS": "reports",
    "CLEANUP": "cleanup",
    "PERIODIC": "periodic",
    "DATABASE_TASKS": "database-tasks",  # the built-in row sink's queue
}
CSV_BATCHES = prefixed(BASE_QUEUES["CSV_BATCHES"])
CSV_BATCHES_BULK = prefixed(BASE_QUEUES["CSV_BATCHES_BULK"])
LETTERS = prefixed(BASE_QUEUES["LETTERS"])
REPORTS = prefixed(BASE_QUEUES["REPORTS"])
CLEANUP = prefixed(BASE_QUEUES["CLEANUP"])
PERIODIC = prefixed(BASE_QUEUES["PERIODIC"])
DATABASE_TASKS = prefixed(BASE_QUEUES["DATABASE_TASKS"])  # the default row sink queue
BULK_SUFFIX = "-bulk"


def bulk_queue(queue: str) -> str:
    """The queue a big job's messages go to, so small jobs never wait behind it."""
    return queue if queue.endswith(BULK_SUFFIX) else queue + BULK_SUFFIX


# Task names are stable (the web app sends them by name): the client package's, not a copy.
from notify_worker_client import names as client_names  # noqa: E402
from notify_worker_client.names import (  # noqa: E402, F401 - re-exported for the tasks
    CLEANUP_SWEEP,
    CSV_CANCEL,
    CSV_PROCESS_BATCH,
    CSV_RELEASE_DUE,
    JOBS_RECONCILE,
    LETTERS_MOVE_TRANSIENT,
    LETTERS_SWEEP_TRANSIENT,
    NOTIFICATIONS_SAVE_BATCH,
    REPORTS_GENERATE,
    REQUEST_ID_HEADER,  # a sender sets it to have its request id on the task's log lines
)

# Internal (sent by ``deadletter replay``): rebuilds a dead-lettered sink batch from its CSV.
CSV_REPLAY_ROWS = "notify.csv.replay_rows"


# Each task's queue: the client's map (base names) with this deployment's prefix, and the
# internal replay task beside the jobs.
TASK_QUEUES: dict[str, str] = {
    **{task: prefixed(base) for task, base in client_names.TASK_QUEUES.items()},
    CSV_REPLAY_ROWS: CSV_BATCHES,
}


def all_queues(sink_queue: str = DATABASE_TASKS) -> list[str]:
    """Every queue the default worker consumes (the built-in sink's queues included)."""
    queues = [CSV_BATCHES, CSV_BATCHES_BULK, LETTERS, REPORTS, CLEANUP, PERIODIC]
    return [*queues, sink_queue, bulk_queue(sink_queue)]
