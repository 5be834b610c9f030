"""The cleanup core: list a bucket page by page, judge each object by its purpose's policy,
and delete the expired ones in batches of up to 1,000 — audit log first, then DeleteObjects.

S3 requests stay at the floor: per 1,000 deleted keys, one list page, one audit-log PutObject
and one DeleteObjects (candidates are buffered across pages, so a sparse bucket does not send
one small delete per page). csv-upload adds one HEAD per object about to be deleted only while
the CSV workflow's Redis state may be incomplete (see ``CsvUploadPolicy``).

Safe to repeat or kill at any line: nothing is remembered between runs, deleting a deleted key
succeeds, and every batch is logged before it is deleted, so a rerun re-lists and finishes.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.admin import versioning_status
from storage.client import get_client
from storage.deletes import MAX_KEYS_PER_DELETE, delete_keys
from storage.errors import InvalidInput, NotifyError, S3NotFound, s3_errors
from storage.keys import isoformat, parse_timestamp
from storage.listing import iter_multipart_uploads, iter_pages
from storage.settings import env_int, get_settings
from tasks.cleanup.audit import AuditLog
from tasks.cleanup.policies import Candidate, Policy, policy_for

logger = logging.getLogger(__name__)

MAX_DELETIONS_ENV = "NOTIFY_CLEANUP_MAX_DELETIONS"
DEFAULT_MAX_DELETIONS = 10_000
MULTIPART_MAX_AGE = timedelta(days=1)
MAX_ERRORS_LISTED = 100  # the result carries at most this many per-key errors (and the count)


@dataclass
class Progress:
    """Handed to the ``progress`` callback after every listed page and every batch."""

    listed: int
    matched: int
    deleted: int
    kept: int
    batch: list[Candidate] = field(default_factory=list)  # the batch just handled, if any
    deleted_keys: list[str] = field(default_factory=list)


@dataclass
class SweepResult:
    purpose: str
    bucket: str
    dry_run: bool
    as_of: datetime
    run_id: str
    max_deletions: int
    rule: str = ""
    status: str = "ok"
    listed: int = 0
    matched: int = 0  # judged deletable (deleted, or would be in a dry run)
    deleted: int = 0
    kept: int = 0
    matched_by_reason: Counter[str] = field(default_factory=Counter)
    kept_by_reason: Counter[str] = field(default_factory=Counter)
    errors: list[dict[str, str]] = field(default_factory=list)
    error_count: int = 0
    audit_logs: list[str] = field(default_factory=list)
    batches: int = 0
    multipart_stale: int = 0
    multipart_aborted: int = 0
    stopped_early: bool = False
    policy_stats: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None  # why a skipped sweep was skipped
    versioning: str | None = None  # the bucket's status, read before the first deletion
    error_code: str | None = None
    error_message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The task's JSON result."""
        result: dict[str, Any] = {
            "status": self.status,
            "purpose": self.purpose,
            "bucket": self.bucket,
            "dry_run": self.dry_run,
            "as_of": isoformat(self.as_of),
            "run_id": self.run_id,
            "rule": self.rule,
            "max_deletions": self.max_deletions,
            "listed": self.listed,
            "matched": self.matched,
            "deleted": self.deleted,
            "kept": self.kept,
            "matched_by_reason": dict(sorted(self.matched_by_reason.items())),
            "kept_by_reason": dict(sorted(self.kept_by_reason.items())),
            "errors": list(self.errors),
            "error_count": self.error_count,
            "audit_logs": list(self.audit_logs),
            "batches": self.batches,
            "multipart_stale": self.multipart_stale,
            "multipart_aborted": self.multipart_aborted,
            "stopped_early": self.stopped_early,
        }
        if self.policy_stats:
            result["policy_stats"] = dict(self.policy_stats)
        if self.versioning:
            # Deletes on a versioned bucket leave delete markers; the versions stay (until the
            # bucket's noncurrent-version lifecycle rule expires them).
            result["versioning"] = self.versioning
            result["delete_markers"] = True
        for name in ("reason", "error_code", "error_message"):
            value = getattr(self, name)
            if value is not None:
                result[name] = value
        return result


def default_max_deletions() -> int:
    return env_int(os.environ, MAX_DELETIONS_ENV, DEFAULT_MAX_DELETIONS, minimum=1)


def _check_max_deletions(value: object) -> int:
    if value is None:
        return default_max_deletions()
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(
            f"max_deletions must be a whole number >= 1, got {value!r}.",
            code="invalid_max_deletions",
        )
    return value


def _now() -> datetime:
    return datetime.now(UTC)


def sweep(
    purpose: str,
    *,
    dry_run: bool = True,
    max_deletions: int | None = None,
    as_of: datetime | str | None = None,
    progress: Callable[[Progress], None] | None = None,
    clock: Callable[[], datetime] = _now,
    policy: Policy | None = None,
    client: Any = None,
    batch_size: int = MAX_KEYS_PER_DELETE,
) -> SweepResult:
    """Sweep one purpose's bucket. A dry run (the default) lists and judges but changes nothing.

    ``max_deletions`` (default ``NOTIFY_CLEANUP_MAX_DELETIONS``, 10,000) caps the keys sent for
    deletion; reaching it with more to delete stops the run with ``stopped_early`` and
    ``error_code`` ``max_deletions_reached``. ``as_of`` (ISO 8601, naive = UTC; default now) is
    the moment ages are measured against; stale multipart uploads are judged by ``clock``
    (the real clock) only. ``policy``, ``client`` and a smaller ``batch_size`` (keys per
    audit log and DeleteObjects call) are for tests and benchmarks.
    """
    if not isinstance(dry_run, bool):
        raise InvalidInput("dry_run must be true or false.", code="invalid_dry_run")
    limit = _check_max_deletions(max_deletions)
    if not 1 <= batch_size <= MAX_KEYS_PER_DELETE:
        raise InvalidInput(f"batch_size must be 1..{MAX_KEYS_PER_DELETE}.", code="invalid_batch")
    now = clock()
    moment = parse_timestamp(as_of, "as_of") if as_of is not None else now
    settings = get_settings()
    bucket = settings.bucket(purpose)  # InvalidInput for an unknown purpose
    client = client or get_client()
    run_id = uuid.uuid4().hex[:12]
    audit = AuditLog(
        settings.bucket("report-downloads"), purpose, run_id, now, as_of=moment, client=client
    )
    policy = policy or policy_for(
        purpose,
        as_of=moment,
        now=now,
        bucket=bucket,
        own_audit_prefix=audit.prefix,
        client=client,
    )
    result = SweepResult(purpose, bucket, dry_run, moment, run_id, limit, rule=policy.describe())
    logger.info(
        "cleanup %s (%s): %s, as_of %s, max %d",
        purpose,
        bucket,
        "dry run" if dry_run else "EXECUTE",
        isoformat(moment),
        limit,
    )
    # Aborting an upload deletes no object, so this runs even where objects are protected.
    _abort_stale_uploads(bucket, now, dry_run, result, client)
    if policy.refusal:
        result.status = "skipped"
        result.reason = policy.refusal
        logger.info("cleanup %s skipped: %s", purpose, policy.refusal)
        return result
    try:
        _Run(policy, bucket, audit, result, dry_run, progress, client, batch_size).go()
    except NotifyError as error:
        if error.retryable:
            raise  # the task retries with backoff; the rerun re-lists, so nothing is lost
        # Keep what was done so far in the result: earlier batches are deleted and logged.
        result.status = "failed"
        result.error_code = error.code
        result.error_message = error.message
    finally:
        result.policy_stats = policy.stats()
    _finish(result)
    return result


def _abort_stale_uploads(
    bucket: str, now: datetime, dry_run: bool, result: SweepResult, client: Any
) -> None:
    cutoff = now - MULTIPART_MAX_AGE
    for upload in iter_multipart_uploads(bucket, client=client):
        if upload.initiated >= cutoff:
            continue
        result.multipart_stale += 1
        if dry_run:
            continue
        try:
            with s3_errors(bucket, upload.key):
                client.abort_multipart_upload(
                    Bucket=bucket, Key=upload.key, UploadId=upload.upload_id
                )
        except S3NotFound:
            continue  # finished or aborted meanwhile: nothing left to do
        result.multipart_aborted += 1


class _Run:
    """One sweep's loop: list, judge, buffer candidates, flush batches."""

    def __init__(
        self,
        policy: Policy,
        bucket: str,
        audit: AuditLog,
        result: SweepResult,
        dry_run: bool,
        progress: Callable[[Progress], None] | None,
        client: Any,
        batch_size: int,
    ) -> None:
        self.policy = policy
        self.batch_size = batch_size
        self.bucket = bucket
        self.audit = audit
        self.result = result
        self.dry_run = dry_run
        self.progress = progress
        self.client = client
        self.budget = result.max_deletions
        self.buffer: list[Candidate] = []

    def go(self) -> None:
        result = self.result
        for page in iter_pages(self.bucket, client=self.client):
            for obj in page:
                delete, reason = self.policy.judge(obj)
                if delete:
                    self.buffer.append(Candidate.of(obj, reason))
                else:
                    result.kept += 1
                    result.kept_by_reason[reason] += 1
            result.listed += len(page)
            while len(self.buffer) >= self.batch_size:
                batch = self.buffer[: self.batch_size]
                self.buffer = self.buffer[self.batch_size :]
                if not self.flush(batch):
                    return
            self._report()
        if self.buffer:
            self.flush(self.buffer)
            self.buffer = []

    def flush(self, batch: list[Candidate]) -> bool:
        """Confirm, audit and delete one batch. False when the guard stops the run."""
        result = self.result
        survivors: list[Candidate] = []
        for candidate, keep_reason in zip(batch, self.policy.confirm(batch), strict=True):
            if keep_reason is None:
                survivors.append(candidate)
            else:
                result.kept += 1
                result.kept_by_reason[keep_reason] += 1
        if not survivors:
            return True
        if len(survivors) > self.budget:
            survivors = survivors[: self.budget]
            result.stopped_early = True
        if survivors:
            self.budget -= len(survivors)
            result.matched += len(survivors)
            result.matched_by_reason.update(c.reason for c in survivors)
            deleted = [] if self.dry_run else self._delete(survivors)
            self._report(survivors, deleted)
        return not result.stopped_early

    def _delete(self, survivors: list[Candidate]) -> list[str]:
        result = self.result
        result.batches += 1
        if result.versioning is None:  # one request per run that deletes anything
            result.versioning = versioning_status(self.bucket, client=self.client)
            self.audit.versioning = result.versioning
        # The log first: a crash after this line leaves logged keys that the rerun re-finds.
        result.audit_logs.append(self.audit.write(result.batches, survivors))
        outcome = delete_keys(
            self.bucket, [c.key for c in survivors], batch_size=self.batch_size, client=self.client
        )
        result.deleted += len(outcome.deleted)
        result.error_count += len(outcome.errors)
        for key, code, message in outcome.errors[: MAX_ERRORS_LISTED - len(result.errors)]:
            result.errors.append({"key": key, "code": code, "message": message[:200]})
        if outcome.errors:
            logger.warning(
                "cleanup %s: %d keys not deleted in batch %d (first: %s)",
                result.purpose,
                len(outcome.errors),
                result.batches,
                outcome.errors[0][1],
            )
        return outcome.deleted

    def _report(
        self, batch: list[Candidate] | None = None, deleted: list[str] | None = None
    ) -> None:
        if self.progress is None:
            return
        r = self.result
        self.progress(Progress(r.listed, r.matched, r.deleted, r.kept, batch or [], deleted or []))


def _finish(result: SweepResult) -> None:
    if result.error_code:
        pass  # already failed (reference check, S3 refusal): that error is the headline
    elif result.stopped_early:
        result.status = "failed"
        result.error_code = "max_deletions_reached"
        verb = "would reach" if result.dry_run else "reached"
        result.error_message = (
            f"Stopped: the run {verb} max_deletions={result.max_deletions} with more objects "
            f"left to delete in {result.purpose}. Check the rule is right, then rerun (a rerun "
            "continues where this one stopped) or raise --max-deletions / "
            f"{MAX_DELETIONS_ENV}."
        )
    elif result.error_count:
        result.status = "failed"
        result.error_code = "delete_errors"
        result.error_message = (
            f"{result.error_count} of {result.matched} keys could not be deleted from "
            f"{result.purpose} (see errors); the rest were. A rerun retries them."
        )
    logger.info(
        "cleanup %s done: listed %d, %s %d, kept %d, errors %d%s",
        result.purpose,
        result.listed,
        "would delete" if result.dry_run else "deleted",
        result.matched if result.dry_run else result.deleted,
        result.kept,
        result.error_count,
        ", STOPPED at max_deletions" if result.stopped_early else "",
    )
