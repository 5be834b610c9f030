"""Per-purpose cleanup decisions, driven by the registry's ``cleanup`` rule (docs/cleanup.md).

A policy judges each listed object in two steps:

* ``judge(obj)`` — from what ListObjectsV2 gives (key, size, LastModified) only, no request:
  either a deletion *candidate* with its reason, or *kept* with its reason;
* ``confirm(candidates)`` — once per batch of at most 1,000 candidates, just before they are
  deleted: the checks that cost a call (the reference check plug-in; the CSV jobs' Redis
  state; a HEAD of each CSV candidate only when that state may be incomplete). It returns, for
  each candidate, ``None`` (delete it) or the reason it is kept after all.

``refusal`` is set when the purpose must not be swept at all (protected buckets, reference-only
buckets without a reference check): the sweep then lists nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis

from storage import keys as keyspace
from storage.buckets import (
    AUDIT_LOG_PREFIX,
    AUDIT_LOG_RETENTION_DAYS,
    BucketSpec,
    CleanupRule,
    spec,
)
from storage.errors import ConfigurationError, InvalidInput, S3NotFound, TransientError
from storage.listing import ListedObject
from storage.objects import ObjectInfo, head
from storage.settings import env_int
from tasks.cleanup.reference import ReferenceCheck, load_reference_check
from tasks.csv_batches import state as csv_state

logger = logging.getLogger(__name__)

# --- reasons (the words of the result, the audit log and the CLI) -----------------------------

EXPIRED = "expired"  # older than the purpose's retention
TEMP_LOGO_EXPIRED = "temporary_logo_expired"
AUDIT_LOG_EXPIRED = "audit_log_expired"
UNREFERENCED = "unreferenced"  # the reference check says nothing uses it

TOO_RECENT = "too_recent"
PERMANENT_LOGO = "permanent_logo"
JOB_PENDING = "job_pending"  # Redis says the job is scheduled or running
JOB_SCHEDULED = "job_scheduled"  # metadata says scheduled and unfinished (Redis may have lost it)
REFERENCED = "referenced"
REFERENCE_GRACE = "reference_grace"  # too new to trust "unreferenced" (web app writes S3 first)
CURRENT_RUN_AUDIT_LOG = "current_run_audit_log"
UNREADABLE_METADATA = "unreadable_metadata"
GONE = "gone"  # deleted by someone else between listing and HEAD

OVERRIDES_ENV = "NOTIFY_CSV_RETENTION_OVERRIDES"
REFERENCE_GRACE_DAYS = 1
# An audit log younger than this by the real clock belongs to a run that may still be going.
AUDIT_LOG_MIN_REAL_AGE = timedelta(days=1)
CSV_HEAD_CONCURRENCY = 8

VERIFY_ENV = "NOTIFY_CLEANUP_CSV_VERIFY"
VERIFY_MODES = ("auto", "always")

Verdict = tuple[bool, str]  # (delete?, reason)
PendingSource = Callable[[], Mapping[str, Any]]


@dataclass(frozen=True)
class CsvJobState:
    """What cleanup needs from the CSV workflow's Redis state (``tasks.csv_batches.state``)."""

    pending: PendingSource  # upload ids of jobs scheduled, queued or running
    complete: Callable[[], bool]  # False when Redis may have lost schedules not yet rebuilt


@dataclass(frozen=True, slots=True)
class Candidate:
    """A listed object the cheap rule would delete, and why."""

    key: str
    size: int
    last_modified: datetime
    reason: str

    @classmethod
    def of(cls, obj: ListedObject, reason: str) -> Candidate:
        return cls(obj.key, obj.size, obj.last_modified, reason)


@dataclass
class Policy:
    """Base policy: nothing is deleted. Subclasses override ``judge`` / ``confirm``."""

    purpose: str
    as_of: datetime
    now: datetime
    refusal: str | None = None

    def judge(self, obj: ListedObject) -> Verdict:
        return False, "protected"

    def confirm(self, candidates: Sequence[Candidate]) -> list[str | None]:
        return [None] * len(candidates)

    def describe(self) -> str:
        return self.refusal or "no rule"

    def stats(self) -> dict[str, Any]:
        """Policy-specific figures for the result (e.g. HEAD requests made)."""
        return {}


def _older_than(moment: datetime, reference: datetime, days: int) -> bool:
    """True when ``moment`` is more than ``days`` days before ``reference``."""
    return moment < reference - timedelta(days=days)


@dataclass
class ProtectedPolicy(Policy):
    def describe(self) -> str:
        return "protected: never deleted"


@dataclass
class AgePolicy(Policy):
    retention_days: int = 7

    def judge(self, obj: ListedObject) -> Verdict:
        if _older_than(obj.last_modified, self.as_of, self.retention_days):
            return True, EXPIRED
        return False, TOO_RECENT

    def describe(self) -> str:
        return f"every object older than {self.retention_days} days"


@dataclass
class TempLogoPolicy(Policy):
    retention_days: int = 7

    def judge(self, obj: ListedObject) -> Verdict:
        # The name alone says temporary: the delete-after-7-days tag is not read (a listing has
        # no tags), so both spellings the admin app may write ("true", and "True" from a URL-
        # encoded Python bool) are swept alike, as the bucket's two lifecycle rules expire them.
        # Temporary logos live at the root (email) or under letters/ (letter logos).
        placed = "/" not in obj.key or obj.key.startswith("letters/")
        if not (placed and keyspace.is_temporary_logo(obj.key)):
            return False, PERMANENT_LOGO
        if _older_than(obj.last_modified, self.as_of, self.retention_days):
            return True, TEMP_LOGO_EXPIRED
        return False, TOO_RECENT

    def describe(self) -> str:
        return f"temporary logos (file name starts temp-) older than {self.retention_days} days"


@dataclass
class ReportsPolicy(Policy):
    retention_days: int = 7
    audit_retention_days: int = AUDIT_LOG_RETENTION_DAYS
    own_audit_prefix: str = ""

    def judge(self, obj: ListedObject) -> Verdict:
        if obj.key.startswith(AUDIT_LOG_PREFIX):
            if self.own_audit_prefix and obj.key.startswith(self.own_audit_prefix):
                return False, CURRENT_RUN_AUDIT_LOG
            # as_of may age logs for a preview, but never one a running sweep may be writing.
            if obj.last_modified > self.now - AUDIT_LOG_MIN_REAL_AGE:
                return False, TOO_RECENT
            if _older_than(obj.last_modified, self.as_of, self.audit_retention_days):
                return True, AUDIT_LOG_EXPIRED
            return False, TOO_RECENT
        if _older_than(obj.last_modified, self.as_of, self.retention_days):
            return True, EXPIRED
        return False, TOO_RECENT

    def describe(self) -> str:
        return (
            f"reports older than {self.retention_days} days; {AUDIT_LOG_PREFIX} logs older "
            f"than {self.audit_retention_days} days"
        )


@dataclass
class ReferencePolicy(Policy):
    check: ReferenceCheck | None = None
    grace_days: int = REFERENCE_GRACE_DAYS
    # contact-list: a list a scheduled or running job reads is kept whatever the check says.
    jobs: CsvJobState | None = None

    def judge(self, obj: ListedObject) -> Verdict:
        if _older_than(obj.last_modified, self.as_of, self.grace_days):
            return True, UNREFERENCED
        return False, REFERENCE_GRACE

    def confirm(self, candidates: Sequence[Candidate]) -> list[str | None]:
        assert self.check is not None
        pending = _pending_ids(self.jobs) if self.jobs else set()
        verdicts: list[str | None] = [
            JOB_PENDING if _upload_id(c.key) in pending else None for c in candidates
        ]
        asked = [c.key for c, v in zip(candidates, verdicts, strict=True) if v is None]
        referenced = self.check(self.purpose, asked) if asked else set()
        return [
            REFERENCED if v is None and c.key in referenced else v
            for c, v in zip(candidates, verdicts, strict=True)
        ]

    def describe(self) -> str:
        return f"objects the reference check no longer knows, older than {self.grace_days} day(s)"


def _upload_id(key: str) -> str | None:
    parsed = keyspace.parse_csv_upload_key(key)
    return parsed.object_id.lower() if parsed else None


def _pending_ids(jobs: CsvJobState) -> set[str]:
    """Upload ids of the CSV jobs Redis says are scheduled, queued or running."""
    try:
        pending = jobs.pending()
    except redis.RedisError as error:
        raise TransientError(
            f"Could not read the pending CSV jobs from Redis ({type(error).__name__}); "
            "nothing was deleted from this batch. Will retry."
        ) from error
    return {str(upload_id).lower() for upload_id in pending}


@dataclass
class CsvUploadPolicy(Policy):
    """Retention counted from the latest of upload, ``scheduled_for`` and
    ``processing_finished_at``; never while the job is scheduled or running.

    ``judge`` uses LastModified, which is never earlier than any of those recording moments
    (the CSV workflow rewrites the object's metadata, resetting LastModified, when it records
    ``scheduled_for`` and when it writes the outcome). ``confirm`` drops the jobs Redis says are
    pending. When the CSV workflow says its Redis state may be incomplete (its sentinel is
    missing: Redis restarted and the reconciler has not rebuilt the schedules yet), or with
    ``verify="always"``, it also HEADs each remaining candidate — one HEAD per object about to
    be deleted, never per listed object — and applies the exact rule from the metadata.
    """

    retention_days: int = 7
    overrides: Mapping[str, int] = field(default_factory=dict)
    jobs: CsvJobState | None = None
    verify: str = "auto"
    bucket: str = ""
    client: Any = None
    head_concurrency: int = CSV_HEAD_CONCURRENCY
    heads: int = 0  # HEAD requests made (for the result)
    unverified_state: bool = False  # seen the Redis state incomplete during this run

    def retention_for(self, key: str) -> int:
        parsed = keyspace.parse_csv_upload_key(key)
        if parsed is None:
            return self.retention_days
        return self.overrides.get(parsed.service_id.lower(), self.retention_days)

    def judge(self, obj: ListedObject) -> Verdict:
        if _older_than(obj.last_modified, self.as_of, self.retention_for(obj.key)):
            return True, EXPIRED
        return False, TOO_RECENT

    def _must_head(self) -> bool:
        assert self.jobs is not None
        if self.verify == "always":
            return True
        try:
            complete = bool(self.jobs.complete())
        except redis.RedisError as error:
            raise TransientError(
                f"Could not read the CSV job state from Redis ({type(error).__name__}). Will retry."
            ) from error
        if not complete and not self.unverified_state:
            self.unverified_state = True
            logger.warning(
                "CSV job state in Redis may be incomplete (no sentinel): reading each "
                "csv-upload candidate's metadata before deleting it"
            )
        return not complete

    def confirm(self, candidates: Sequence[Candidate]) -> list[str | None]:
        assert self.jobs is not None
        pending = _pending_ids(self.jobs)
        verdicts: list[str | None] = [
            JOB_PENDING if _upload_id(c.key) in pending else None for c in candidates
        ]
        to_head = [i for i, v in enumerate(verdicts) if v is None]
        if to_head and self._must_head():
            with ThreadPoolExecutor(max_workers=self.head_concurrency) as pool:
                infos = list(pool.map(self._head, [candidates[i].key for i in to_head]))
            self.heads += len(to_head)
            for index, info in zip(to_head, infos, strict=True):
                verdicts[index] = self._verdict_from_metadata(candidates[index], info)
        return verdicts

    def stats(self) -> dict[str, Any]:
        return {
            "head_requests": self.heads,
            "verify": self.verify,
            "job_state_incomplete": self.unverified_state,
        }

    def _head(self, key: str) -> ObjectInfo | None:
        try:
            return head(self.bucket, key, client=self.client)
        except S3NotFound:
            return None

    def _verdict_from_metadata(self, candidate: Candidate, info: ObjectInfo | None) -> str | None:
        if info is None:
            return GONE
        meta = {k.lower(): v for k, v in info.metadata.items()}
        try:
            moments = [info.last_modified]
            for name in ("uploaded_at", "scheduled_for", "processing_finished_at"):
                if meta.get(name):
                    moments.append(keyspace.parse_timestamp(meta[name], name))
        except InvalidInput:
            return UNREADABLE_METADATA
        as_of = self.as_of
        if meta.get("scheduled_for") and not meta.get("processing_status"):
            # Scheduled and no outcome yet: pending, or lost from Redis and about to be rebuilt
            # by the reconciler. Judge it by the real clock, whatever as_of says.
            as_of = min(as_of, self.now)
            if keyspace.parse_timestamp(meta["scheduled_for"]) > self.now:
                return JOB_SCHEDULED
        if _older_than(max(moments), as_of, self.retention_for(candidate.key)):
            return None
        return TOO_RECENT

    def describe(self) -> str:
        extra = f" ({len(self.overrides)} per-service overrides)" if self.overrides else ""
        return (
            f"CSVs older than {self.retention_days} days{extra} from the latest of upload, "
            "scheduled_for and processing_finished_at; never while the job is pending"
        )


# --- configuration ------------------------------------------------------------------------------


def parse_retention_overrides(raw: str, *, name: str = OVERRIDES_ENV) -> dict[str, int]:
    """``"<service_id>=<days>,..."`` to ``{service_id: days}``; a clear error otherwise."""
    overrides: dict[str, int] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        service_id, sep, days_text = (piece.strip() for piece in item.partition("="))
        try:
            if not sep:
                raise ValueError
            keyspace.require_uuid(service_id, "service_id")
            days = int(days_text)
            if days < 1:
                raise ValueError
        except (ValueError, InvalidInput):
            raise ConfigurationError(
                f"{name} must look like '<service_id>=<days>,...' with UUID service ids and "
                f"whole days >= 1; bad entry {item[:80]!r}.",
                code="invalid_retention_override",
            ) from None
        overrides[service_id.lower()] = days
    return overrides


def retention_days(bucket: BucketSpec, environ: Mapping[str, str]) -> int:
    default = bucket.retention_days or 7
    if bucket.retention_env:
        return env_int(environ, bucket.retention_env, default, minimum=1)
    return default


def load_csv_state() -> CsvJobState:
    """The CSV workflow's Redis state, as cleanup reads it."""
    return CsvJobState(pending=csv_state.pending_uploads, complete=csv_state.sentinel_present)


def csv_verify_mode(environ: Mapping[str, str]) -> str:
    mode = (environ.get(VERIFY_ENV) or "auto").strip().lower()
    if mode not in VERIFY_MODES:
        raise ConfigurationError(
            f"{VERIFY_ENV} must be one of {', '.join(VERIFY_MODES)}, got {mode!r}.",
            code="invalid_csv_verify",
        )
    return mode


def policy_for(
    purpose: str,
    *,
    as_of: datetime,
    now: datetime,
    bucket: str,
    own_audit_prefix: str = "",
    environ: Mapping[str, str] | None = None,
    reference_check: ReferenceCheck | None = None,
    jobs: CsvJobState | None = None,
    client: Any = None,
) -> Policy:
    """The policy of ``purpose`` for one run.

    ``reference_check`` and ``jobs`` default to the configured plug-in
    (``NOTIFY_REFERENCE_CHECK``) and the CSV workflow's Redis state.
    """
    environ = os.environ if environ is None else environ
    entry = spec(purpose)
    rule = entry.cleanup
    common: dict[str, Any] = {"purpose": purpose, "as_of": as_of, "now": now}
    if rule is CleanupRule.PROTECTED:
        return ProtectedPolicy(
            **common, refusal=f"{purpose} is protected: its objects are never deleted."
        )
    if rule is CleanupRule.AGE:
        return AgePolicy(**common, retention_days=retention_days(entry, environ))
    if rule is CleanupRule.TEMP_LOGO:
        return TempLogoPolicy(**common, retention_days=retention_days(entry, environ))
    if rule is CleanupRule.REPORTS:
        return ReportsPolicy(
            **common,
            retention_days=retention_days(entry, environ),
            own_audit_prefix=own_audit_prefix,
        )
    if rule is CleanupRule.REFERENCE:
        check = reference_check or load_reference_check(environ)
        refusal = None
        if check is None:
            refusal = (
                f"{purpose} is only swept through the reference check, and "
                "NOTIFY_REFERENCE_CHECK is not set: nothing is deleted."
            )
        if check is not None and purpose == "contact-list":
            jobs = jobs or load_csv_state()
        return ReferencePolicy(**common, refusal=refusal, check=check, jobs=jobs)
    if rule is CleanupRule.CSV_JOBS:
        return CsvUploadPolicy(
            **common,
            retention_days=retention_days(entry, environ),
            overrides=parse_retention_overrides(environ.get(OVERRIDES_ENV) or ""),
            jobs=jobs or load_csv_state(),
            verify=csv_verify_mode(environ),
            bucket=bucket,
            client=client,
        )
    raise ConfigurationError(f"No cleanup policy for rule {rule!r} ({purpose}).")
