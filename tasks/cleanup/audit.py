"""The cleanup audit log: one JSON-lines object per deletion batch, in the report-downloads
bucket under ``cleanup-audit/{purpose}/{run timestamp}-{run id}-{batch no}.jsonl``.

Each line is ``{"key", "size", "last_modified", "reason"}``; on a versioned bucket (versioning
Enabled or Suspended) each line also says ``"delete_marker": true`` and the object's metadata
``versioning`` names the status: there a delete hides the object behind a delete marker and its
versions stay until the bucket's noncurrent-version rule expires them.

A batch's log is written *before* its DeleteObjects call, so a crash can never leave a deletion
unaudited. The log therefore records keys *submitted* for deletion: a key logged but not deleted
(a crash between the two calls, or a per-key error, which the run's result lists) is still in the
bucket, and the next run finds it, logs it again under its own run id, and deletes it. Every run
has a fresh run id, so no run ever overwrites another's log.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from storage.buckets import AUDIT_LOG_PREFIX
from storage.keys import isoformat
from storage.objects import put_bytes
from tasks.cleanup.policies import Candidate

CONTENT_TYPE = "application/x-ndjson"


def run_stamp(moment: datetime) -> str:
    """Sortable and key-safe: ``20260102T030405Z``."""
    return isoformat(moment).replace("-", "").replace(":", "")


class AuditLog:
    """Writes the audit objects of one run."""

    def __init__(
        self,
        bucket: str,
        purpose: str,
        run_id: str,
        started: datetime,
        *,
        as_of: datetime,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.purpose = purpose
        self.run_id = run_id
        self.as_of = as_of
        self.client = client
        # Everything this run writes starts with this prefix (the reports policy skips it).
        self.prefix = f"{AUDIT_LOG_PREFIX}{purpose}/{run_stamp(started)}-{run_id}-"
        self.keys: list[str] = []
        # The bucket's versioning status ("" when never versioned), set before the first write.
        self.versioning = ""

    def key_for(self, batch_no: int) -> str:
        return f"{self.prefix}{batch_no:05d}.jsonl"

    @staticmethod
    def render(candidates: Sequence[Candidate], *, delete_marker: bool = False) -> bytes:
        extra = {"delete_marker": True} if delete_marker else {}
        lines = (
            json.dumps(
                {
                    "key": c.key,
                    "size": c.size,
                    "last_modified": isoformat(c.last_modified),
                    "reason": c.reason,
                    **extra,
                },
                separators=(",", ":"),
            )
            for c in candidates
        )
        return ("\n".join(lines) + "\n").encode()

    def write(self, batch_no: int, candidates: Sequence[Candidate]) -> str:
        """PutObject (encrypted as configured) one batch's log; returns its key. Raises on
        failure, so the caller never deletes a batch whose log was not written."""
        key = self.key_for(batch_no)
        metadata = {
            "purpose": self.purpose,
            "run_id": self.run_id,
            "as_of": isoformat(self.as_of),
            "batch": str(batch_no),
            "lines": str(len(candidates)),
        }
        if self.versioning:
            metadata["versioning"] = self.versioning
        put_bytes(
            self.bucket,
            key,
            self.render(candidates, delete_marker=bool(self.versioning)),
            content_type=CONTENT_TYPE,
            metadata=metadata,
            client=self.client,
        )
        self.keys.append(key)
        return key
