"""The sweep core on in-process moto: what is deleted, what survives, the guard, the audit log,
per-key errors, stale multipart uploads, and a crash half-way then a rerun."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage.errors import InvalidInput
from tasks.cleanup import policies
from tasks.cleanup.sweep import sweep
from tests.cleanup_fixtures import (
    OTHER_SERVICE,
    SERVICE,
    audit_lines,
    bucket,
    csv_key,
    keys_in,
    new_id,
    put_aged,
    seed,
)
from tests.plugins import reference_check as fake

CHECK = "tests.plugins.reference_check:check"


class FakeJobs(dict):
    """The CSV jobs Redis says are pending (fill in the dict), and whether that state is
    complete (``complete = False``: Redis lost state the reconciler has not rebuilt yet)."""

    complete = True


@pytest.fixture
def pending(monkeypatch):
    jobs = FakeJobs()
    state = policies.CsvJobState(pending=lambda: dict(jobs), complete=lambda: jobs.complete)
    monkeypatch.setattr(policies, "load_csv_state", lambda: state)
    return jobs


@pytest.fixture
def reference(monkeypatch):
    monkeypatch.setenv("NOTIFY_REFERENCE_CHECK", CHECK)
    fake.REFERENCED.clear()
    fake.CALLS.clear()
    yield fake.REFERENCED
    fake.REFERENCED.clear()
    fake.CALLS.clear()


def letter(days: float) -> str:
    return put_aged("transient-letters", f"service-{SERVICE}/{new_id()}.pdf", days)


def letters(count: int, days: float) -> list[str]:
    return seed(
        "transient-letters", (f"service-{SERVICE}/{new_id()}.pdf" for _ in range(count)), days
    )


class Wrapped:
    """The real client with ``delete_objects`` (and optionally ``put_object``) intercepted."""

    def __init__(self, real, *, fail_keys=(), crash_on_delete_call=None):
        self._real = real
        self.fail_keys = set(fail_keys)
        self.crash_on_delete_call = crash_on_delete_call
        self.delete_calls = 0
        self.calls: list[str] = []

    def __getattr__(self, name):
        return getattr(self._real, name)

    def put_object(self, **kw):
        self.calls.append("put_object")
        return self._real.put_object(**kw)

    def delete_objects(self, **kw):
        self.delete_calls += 1
        self.calls.append("delete_objects")
        if self.delete_calls == self.crash_on_delete_call:
            raise RuntimeError("worker killed")
        objects = kw["Delete"]["Objects"]
        failing = [o for o in objects if o["Key"] in self.fail_keys]
        kw["Delete"]["Objects"] = [o for o in objects if o["Key"] not in self.fail_keys]
        response = self._real.delete_objects(**kw) if kw["Delete"]["Objects"] else {}
        errors = [
            {"Key": o["Key"], "Code": "AccessDenied", "Message": "Access Denied"} for o in failing
        ]
        return {**response, "Errors": errors}


def test_dry_run_is_the_default_and_deletes_nothing(fast_s3):
    old = [letter(10) for _ in range(3)]
    young = letter(1)
    result = sweep("transient-letters")
    assert result.dry_run is True
    assert result.status == "ok"
    assert (result.listed, result.matched, result.deleted, result.kept) == (4, 3, 0, 1)
    assert result.matched_by_reason == {"expired": 3}
    assert keys_in("transient-letters") == {*old, young}
    assert result.audit_logs == [] and keys_in("report-downloads") == set()


def test_execute_deletes_exactly_the_expired_transient_letters(fast_s3):
    old = {letter(8) for _ in range(3)}
    young = {letter(6), letter(0)}
    result = sweep("transient-letters", dry_run=False)
    assert result.status == "ok", result.as_dict()
    assert result.deleted == 3 and result.kept == 2
    assert keys_in("transient-letters") == young
    assert {line["key"] for line in audit_lines()} == old


def test_execute_on_logos_deletes_only_old_temporary_ones(fast_s3):
    prefix = "letters/static/images/letter-template/"
    doomed = {put_aged("logo", "temp-a.png", 8), put_aged("logo", f"{prefix}temp-b.svg", 30)}
    survivors = {
        put_aged("logo", "temp-young.png", 2),
        put_aged("logo", "hm-government.png", 5000),
        put_aged("logo", f"{prefix}crest.svg", 5000),
        put_aged("logo", "other/temp-c.png", 5000),
    }
    result = sweep("logo", dry_run=False, as_of=datetime.now(UTC) + timedelta(days=3650))
    assert keys_in("logo") == survivors - {"temp-young.png"}
    assert result.matched_by_reason == {"temporary_logo_expired": 3}
    assert result.kept_by_reason == {"permanent_logo": 3}
    assert doomed <= {line["key"] for line in audit_lines()}


def test_report_downloads_reports_after_7_days_and_audit_logs_after_90(fast_s3):
    old_report = put_aged("report-downloads", f"uploads_report/{new_id()}.csv", 8)
    new_report = put_aged("report-downloads", f"uploads_report/{new_id()}.csv", 6)
    old_log = put_aged("report-downloads", "cleanup-audit/logo/old-run-00001.jsonl", 91)
    kept_log = put_aged("report-downloads", "cleanup-audit/logo/recent-run-00001.jsonl", 80)
    result = sweep("report-downloads", dry_run=False)
    left = keys_in("report-downloads")
    assert old_report not in left and old_log not in left
    assert {new_report, kept_log} <= left
    assert result.matched_by_reason == {"audit_log_expired": 1, "expired": 1}
    # This run's own audit log is in the same bucket and survives.
    assert set(result.audit_logs) <= left


def test_report_downloads_keeps_this_runs_audit_logs_whatever_as_of(fast_s3):
    for _ in range(3):
        put_aged("report-downloads", f"notifications_report/{new_id()}.csv", 30)
    far = datetime.now(UTC) + timedelta(days=400)
    first = sweep("report-downloads", dry_run=False, as_of=far, batch_size=1)
    assert first.deleted == 3 and len(first.audit_logs) == 3
    # A second run a year "later" still keeps logs a sweep may be writing (real age < 1 day).
    second = sweep("report-downloads", dry_run=False, as_of=far)
    assert second.deleted == 0 and second.kept_by_reason == {"too_recent": 3}
    assert set(first.audit_logs) == keys_in("report-downloads")


def test_reference_purposes_delete_only_unreferenced_old_objects(fast_s3, reference):
    keep = put_aged("email-attachments", f"{SERVICE}/{new_id()}", 30)
    reference.add(keep)
    gone = put_aged("email-attachments", f"{SERVICE}/{new_id()}", 30)
    fresh = put_aged("email-attachments", f"{SERVICE}/{new_id()}", 0.1)
    result = sweep("email-attachments", dry_run=False)
    assert keys_in("email-attachments") == {keep, fresh}
    assert result.matched_by_reason == {"unreferenced": 1}
    assert result.kept_by_reason == {"referenced": 1, "reference_grace": 1}
    assert fake.CALLS == [("email-attachments", 2)]
    assert [line["key"] for line in audit_lines()] == [gone]


def test_contact_lists_are_never_deleted_by_age(fast_s3, reference, pending):
    used = put_aged("contact-list", csv_key(), 5000)
    reference.add(used)
    in_use_id = new_id()
    in_use = put_aged("contact-list", csv_key(upload_id=in_use_id), 30)
    pending[in_use_id] = {"status": "running", "source": "contact-list"}
    orphan = put_aged("contact-list", csv_key(), 30)
    result = sweep("contact-list", dry_run=False)
    assert keys_in("contact-list") == {used, in_use}
    assert result.kept_by_reason == {"referenced": 1, "job_pending": 1}
    assert [line["key"] for line in audit_lines()] == [orphan]
    assert fake.CALLS == [("contact-list", 2)]  # the pending one is not even asked about


@pytest.mark.parametrize("purpose", ["contact-list", "letter-attachments", "email-attachments"])
def test_reference_purposes_without_a_check_are_skipped(fast_s3, purpose, monkeypatch):
    monkeypatch.delenv("NOTIFY_REFERENCE_CHECK", raising=False)
    key = put_aged(purpose, f"service-{SERVICE}/{new_id()}.pdf", 5000)
    result = sweep(purpose, dry_run=False, max_deletions=1_000_000)
    assert result.status == "skipped" and "NOTIFY_REFERENCE_CHECK" in result.reason
    assert result.listed == 0
    assert keys_in(purpose) == {key}


@pytest.mark.parametrize("purpose", ["mou", "letter-backups", "letters-pdf"])
def test_protected_purposes_survive_any_flags(fast_s3, purpose, reference, pending):
    names = {"mou": "crown.pdf", "letter-backups": f"{new_id()}.pdf"}
    key = names.get(purpose, "2026-01-01/NOTIFY.ABC123.D.2.C.20260101120000.PDF")
    put_aged(purpose, key, 5000)
    result = sweep(
        purpose, dry_run=False, max_deletions=10**9, as_of=datetime.now(UTC) + timedelta(days=10**4)
    )
    assert result.status == "skipped" and "protected" in result.reason
    assert result.listed == 0 and result.deleted == 0
    assert keys_in(purpose) == {key}
    assert fake.CALLS == []


def test_stale_multipart_uploads_are_aborted_even_in_protected_buckets(fast_s3):
    client = fast_s3
    name = bucket("letters-pdf")
    client.create_multipart_upload(
        Bucket=name, Key="2026-01-01/X.PDF", ServerSideEncryption="AES256"
    )
    # moto reports every upload as initiated in 2010: by the real clock it is stale.
    dry = sweep("letters-pdf")
    assert (dry.multipart_stale, dry.multipart_aborted) == (1, 0)
    assert client.list_multipart_uploads(Bucket=name).get("Uploads")
    done = sweep("letters-pdf", dry_run=False)
    assert (done.multipart_stale, done.multipart_aborted) == (1, 1)
    assert not client.list_multipart_uploads(Bucket=name).get("Uploads")


def test_multipart_age_uses_the_real_clock_never_as_of(fast_s3):
    client = fast_s3
    name = bucket("transient-letters")
    client.create_multipart_upload(Bucket=name, Key="x.pdf", ServerSideEncryption="AES256")
    initiated = client.list_multipart_uploads(Bucket=name)["Uploads"][0]["Initiated"]
    # A real clock an hour after the upload started: young, whatever as_of says.
    result = sweep(
        "transient-letters",
        dry_run=False,
        as_of=datetime.now(UTC) + timedelta(days=365),
        clock=lambda: initiated + timedelta(hours=1),
    )
    assert (result.multipart_stale, result.multipart_aborted) == (0, 0)
    assert client.list_multipart_uploads(Bucket=name).get("Uploads")


def test_the_guard_stops_after_max_deletions(fast_s3):
    for _ in range(12):
        letter(10)
    result = sweep("transient-letters", dry_run=False, max_deletions=5)
    assert result.deleted == 5 and result.stopped_early
    assert result.status == "failed" and result.error_code == "max_deletions_reached"
    assert "max_deletions=5" in result.error_message
    assert len(keys_in("transient-letters")) == 7
    assert len(audit_lines()) == 5
    # The dry run rehearses the same stop.
    dry = sweep("transient-letters", max_deletions=5)
    assert dry.matched == 5 and dry.stopped_early and dry.deleted == 0
    # A rerun continues where the first stopped.
    again = sweep("transient-letters", dry_run=False, max_deletions=7)
    assert again.deleted == 7 and not again.stopped_early and again.status == "ok"


def test_the_guard_does_not_trip_when_exactly_max_remain(fast_s3):
    for _ in range(4):
        letter(10)
    letter(1)
    result = sweep("transient-letters", dry_run=False, max_deletions=4)
    assert result.deleted == 4 and not result.stopped_early and result.status == "ok"


def test_audit_log_lists_every_deletion_before_it_happens(fast_s3):
    keys = set(letters(2500, 9))
    client = Wrapped(fast_s3)
    result = sweep("transient-letters", dry_run=False, client=client)
    assert result.deleted == 2500 and result.batches == 3
    # Each batch: its audit log is written, then its DeleteObjects is sent.
    assert client.calls == ["put_object", "delete_objects"] * 3
    lines = audit_lines()
    assert {line["key"] for line in lines} == keys and len(lines) == 2500
    assert set(lines[0]) == {"key", "size", "last_modified", "reason"}
    assert lines[0]["size"] == 1 and lines[0]["reason"] == "expired"
    assert lines[0]["last_modified"].endswith("Z")
    assert len(result.audit_logs) == 3
    assert all(k.startswith("cleanup-audit/transient-letters/") for k in result.audit_logs)
    info = fast_s3.head_object(Bucket=bucket("report-downloads"), Key=result.audit_logs[0])
    assert info["ServerSideEncryption"] == "AES256"
    assert info["Metadata"]["run_id"] == result.run_id


def test_per_key_errors_are_reported_and_do_not_stop_the_run(fast_s3):
    keys = sorted(letters(25, 9))
    bad = {keys[3], keys[21]}
    client = Wrapped(fast_s3, fail_keys=bad)
    result = sweep("transient-letters", dry_run=False, client=client, batch_size=10)
    assert client.delete_calls == 3  # the errors of batch 1 did not stop batches 2 and 3
    assert result.deleted == 23 and result.error_count == 2
    assert {e["key"] for e in result.errors} == bad
    assert {e["code"] for e in result.errors} == {"AccessDenied"}
    assert result.status == "failed" and result.error_code == "delete_errors"
    assert keys_in("transient-letters") == bad
    # The rerun (errors gone) finishes the job.
    assert sweep("transient-letters", dry_run=False).deleted == 2


def test_a_crash_half_way_is_safe_to_repeat(fast_s3):
    keys = set(letters(25, 9))
    crashing = Wrapped(fast_s3, crash_on_delete_call=2)
    with pytest.raises(RuntimeError, match="worker killed"):
        sweep("transient-letters", dry_run=False, client=crashing, batch_size=10)
    left = keys_in("transient-letters")
    assert len(left) == 15  # batch 1 deleted; batch 2 logged but never deleted
    assert len(audit_lines()) == 20 and left <= keys
    rerun = sweep("transient-letters", dry_run=False, batch_size=10)
    assert rerun.deleted == 15 and rerun.status == "ok"
    assert keys_in("transient-letters") == set()
    assert {line["key"] for line in audit_lines()} == keys  # every deletion audited


def test_a_failing_reference_check_deletes_nothing_of_its_batch(fast_s3, monkeypatch):
    monkeypatch.setenv("NOTIFY_REFERENCE_CHECK", "tests.plugins.reference_check:broken")
    key = put_aged("letter-attachments", f"service-{SERVICE}/{new_id()}.pdf", 30)
    result = sweep("letter-attachments", dry_run=False)
    assert result.status == "failed" and result.error_code == "reference_check_failed"
    assert keys_in("letter-attachments") == {key}


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"max_deletions": 0}, "invalid_max_deletions"),
        ({"max_deletions": True}, "invalid_max_deletions"),
        ({"max_deletions": "5"}, "invalid_max_deletions"),
        ({"dry_run": "false"}, "invalid_dry_run"),
        ({"as_of": "next tuesday"}, "invalid_timestamp"),
    ],
)
def test_bad_arguments_are_refused(fast_s3, kwargs, code):
    with pytest.raises(InvalidInput) as caught:
        sweep("transient-letters", **kwargs)
    assert caught.value.code == code


def test_unknown_purpose_is_refused(fast_s3):
    with pytest.raises(InvalidInput) as caught:
        sweep("everything")
    assert caught.value.code == "unknown_bucket"


def test_max_deletions_default_comes_from_the_environment(fast_s3, monkeypatch):
    monkeypatch.setenv("NOTIFY_CLEANUP_MAX_DELETIONS", "2")
    for _ in range(3):
        letter(10)
    result = sweep("transient-letters", dry_run=False)
    assert result.max_deletions == 2 and result.deleted == 2 and result.stopped_early


# --- csv-upload ---------------------------------------------------------------------------------


def test_csv_upload_keeps_pending_jobs_and_deletes_old_ones(fast_s3, pending):
    old = put_aged("csv-upload", csv_key(), 8)
    running_id = new_id()
    running = put_aged("csv-upload", csv_key(upload_id=running_id), 30)
    pending[running_id] = {"status": "running", "scheduled_for": None}
    young = put_aged("csv-upload", csv_key(), 3)
    result = sweep("csv-upload", dry_run=False)
    assert keys_in("csv-upload") == {running, young}
    assert result.kept_by_reason == {"job_pending": 1, "too_recent": 1}
    assert [line["key"] for line in audit_lines()] == [old]


def test_csv_upload_scheduled_beyond_as_of_is_kept(fast_s3, pending):
    """Redis has lost the schedule; the metadata still says scheduled and unfinished."""
    pending.complete = False
    later = datetime.now(UTC) + timedelta(days=5)
    key = put_aged("csv-upload", csv_key(), 2, metadata={"scheduled_for": later.isoformat()})
    result = sweep("csv-upload", dry_run=False, as_of=datetime.now(UTC) + timedelta(days=60))
    assert keys_in("csv-upload") == {key}
    assert result.kept_by_reason == {"job_scheduled": 1}
    assert result.policy_stats["head_requests"] == 1
    assert result.policy_stats["job_state_incomplete"] is True


def test_csv_upload_retention_counts_from_the_latest_moment(fast_s3, pending, monkeypatch):
    monkeypatch.setenv("NOTIFY_CLEANUP_CSV_VERIFY", "always")
    now = datetime.now(UTC)
    # Cancelled before it ran, scheduled for 5 days after it was recorded (10 days ago):
    # retention runs from scheduled_for, 5 days ago.
    cancelled = put_aged(
        "csv-upload",
        csv_key(),
        10,
        metadata={
            "scheduled_for": (now - timedelta(days=5)).isoformat(),
            "processing_status": "cancelled",
            "processing_finished_at": (now - timedelta(days=10)).isoformat(),
        },
    )
    finished = put_aged(
        "csv-upload",
        csv_key(),
        9,
        metadata={"processing_status": "finished", "processing_finished_at": "2020-01-01"},
    )
    lost = put_aged(  # scheduled long ago and never ran: not pending any more
        "csv-upload",
        csv_key(),
        20,
        metadata={"scheduled_for": (now - timedelta(days=19)).isoformat()},
    )
    result = sweep("csv-upload", dry_run=False)
    assert keys_in("csv-upload") == {cancelled}
    assert result.kept_by_reason == {"too_recent": 1}
    assert {line["key"] for line in audit_lines()} == {finished, lost}


def test_csv_upload_unreadable_metadata_is_kept(fast_s3, pending):
    pending.complete = False
    key = put_aged("csv-upload", csv_key(), 30, metadata={"scheduled_for": "whenever"})
    result = sweep("csv-upload", dry_run=False)
    assert keys_in("csv-upload") == {key}
    assert result.kept_by_reason == {"unreadable_metadata": 1}


def test_csv_upload_per_service_override(fast_s3, pending, monkeypatch):
    monkeypatch.setenv("NOTIFY_CSV_RETENTION_OVERRIDES", f"{SERVICE}=30,{OTHER_SERVICE}=2")
    long_kept = put_aged("csv-upload", csv_key(SERVICE), 20)
    short = put_aged("csv-upload", csv_key(OTHER_SERVICE), 3)
    default = put_aged("csv-upload", csv_key(new_id()), 8)
    result = sweep("csv-upload", dry_run=False)
    assert keys_in("csv-upload") == {long_kept}
    assert {line["key"] for line in audit_lines()} == {short, default}
    assert result.deleted == 2


def count_heads(client) -> list[str]:
    heads: list[str] = []
    client.meta.events.register(
        "before-call.s3.HeadObject", lambda params, **_: heads.append(params["url_path"])
    )
    return heads


def test_csv_upload_needs_no_head_while_the_job_state_is_complete(fast_s3, pending):
    doomed = {put_aged("csv-upload", csv_key(), 10) for _ in range(3)}
    young = put_aged("csv-upload", csv_key(), 1)
    heads = count_heads(fast_s3)
    try:
        result = sweep("csv-upload", dry_run=False)
    finally:
        fast_s3.meta.events.unregister("before-call.s3.HeadObject")
    assert heads == [] and result.policy_stats["head_requests"] == 0
    assert keys_in("csv-upload") == {young}
    assert {line["key"] for line in audit_lines()} == doomed


def test_csv_upload_heads_only_the_candidates_when_the_state_may_be_lost(fast_s3, pending):
    pending.complete = False
    for _ in range(5):
        put_aged("csv-upload", csv_key(), 1)
    pending_id = new_id()
    put_aged("csv-upload", csv_key(upload_id=pending_id), 10)
    pending[pending_id] = {"status": "scheduled", "scheduled_for": None}
    doomed = put_aged("csv-upload", csv_key(), 10)
    heads = count_heads(fast_s3)
    try:
        result = sweep("csv-upload", dry_run=False)
    finally:
        fast_s3.meta.events.unregister("before-call.s3.HeadObject")
    assert len(heads) == 1 and heads[0].endswith(doomed.rsplit("/", 1)[1])
    assert result.policy_stats == {
        "head_requests": 1,
        "verify": "auto",
        "job_state_incomplete": True,
    }


def test_csv_upload_redis_failure_is_transient(fast_s3, monkeypatch):
    import redis

    from storage.errors import TransientError

    def down():
        raise redis.ConnectionError("gone")

    state = policies.CsvJobState(pending=down, complete=lambda: True)
    monkeypatch.setattr(policies, "load_csv_state", lambda: state)
    key = put_aged("csv-upload", csv_key(), 30)
    with pytest.raises(TransientError):
        sweep("csv-upload", dry_run=False)
    assert keys_in("csv-upload") == {key}
