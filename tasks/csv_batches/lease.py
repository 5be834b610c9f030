"""One runner per CSV job: the lease, its heartbeat, and what happens when it is lost.

``JobLease.hold(upload_id)`` takes ``notify:job:{upload_id}:lease`` (SET NX EX, a random
token) for the ``with`` block and gives it back at the end (only if it is still ours). While
the job runs, the holder calls

* ``record(progress)``: writes the dispatch pass's checkpoint and counters with the heartbeat in
  one HSET, and refreshes the lease when it is due;
* ``keep_alive()``: between writes (long stretches of invalid rows, the scan pass), refreshes
  the lease and the heartbeat when due;
* ``confirm()``: refreshes the lease now, before writing the job's ending.

Refreshing is due several times per ``NOTIFY_JOB_STALE_SECONDS`` (every ``min(5 s, stale / 4)``),
so one slow batch never looks like a dead job, and Redis is not touched on every row. Progress
is written only while the lease is ours (one script checks and writes). A lease that expired
is taken back only if nobody has run the job since (the job hash still names this runner);
otherwise ``LeaseLost`` is raised and the runner stops without writing anything more: a worker
cut off from Redis for longer than the stale period finds, when it comes back, that the job
is someone else's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tasks.csv_batches import state as st
from worker.runtime.settings import get_worker_settings


class LeaseLost(Exception):
    """Our lease expired and another runner holds the job now: stop without writing."""


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a dispatch pass is: the last row handed to the broker, and its counters."""

    checkpoint: int
    dispatched: int
    invalid: int


class JobLease:
    """The right to work on one job, kept fresh while the job runs (see the module)."""

    def __init__(
        self,
        upload_id: str,
        token: str,
        ttl: int,
        *,
        progress_prefix: str = "",
        on_refresh: Callable[[], None] | None = None,
    ) -> None:
        self.upload_id = upload_id
        self.token = token
        self.ttl = ttl
        # A re-send records its progress apart (resend_checkpoint...), not in the job's own.
        self.progress_prefix = progress_prefix
        self.on_refresh = on_refresh
        self.interval = max(0.2, min(5.0, ttl / 4))
        self._next = time.monotonic() + self.interval

    @classmethod
    @contextmanager
    def hold(cls, upload_id: str, *, progress_prefix: str = "") -> Iterator[JobLease | None]:
        """The lease for the ``with`` block, or None when another runner holds it."""
        token = uuid.uuid4().hex
        ttl = get_worker_settings().job_stale_seconds
        if not st.acquire_lease(upload_id, token, ttl):
            yield None
            return
        try:
            yield cls(upload_id, token, ttl, progress_prefix=progress_prefix)
        finally:
            st.release_lease(upload_id, token)

    def due(self) -> bool:
        return time.monotonic() >= self._next

    def record(self, progress: Progress) -> None:
        """Write the pass's progress (with the heartbeat) while we hold the lease; refresh the
        lease when due."""
        prefix = self.progress_prefix
        fields = {
            prefix + "checkpoint": progress.checkpoint,
            prefix + "dispatched": progress.dispatched,
            prefix + "invalid": progress.invalid,
        }
        if not st.update_if_holder(self.upload_id, self.token, fields):
            self._refresh()  # expired: take it back if still ours to take, else LeaseLost
            st.update_if_holder(self.upload_id, self.token, fields)
        elif self.due():
            self._refresh()

    def keep_alive(self) -> None:
        """Refresh the lease and the heartbeat if it is time."""
        if self.due():
            self._refresh()
            st.update_if_holder(self.upload_id, self.token, {})

    def _take_back(self) -> bool:
        """An expired lease is ours again only if nobody started the job since: the job hash
        still names our token as its runner (a re-send pass never takes one back)."""
        if self.progress_prefix:
            return False
        return st.take_back_lease(self.upload_id, self.token, self.ttl)

    def confirm(self) -> None:
        """Refresh the lease now; ``LeaseLost`` if another runner has the job."""
        self._refresh()

    def _refresh(self) -> None:
        if not st.refresh_lease(self.upload_id, self.token, self.ttl) and not self._take_back():
            raise LeaseLost(self.upload_id)
        if self.on_refresh is not None:
            self.on_refresh()
        self._next = time.monotonic() + self.interval
