"""Cleanup policies: each purpose's rule, judged on listed objects alone (no S3)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest

from storage.errors import ConfigurationError
from storage.listing import ListedObject
from tasks.cleanup import policies
from tasks.cleanup.policies import (
    AgePolicy,
    Candidate,
    ReferencePolicy,
    ReportsPolicy,
    TempLogoPolicy,
    parse_retention_overrides,
    policy_for,
)
from tasks.cleanup.reference import ReferenceCheck

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SERVICE = "9d3f4d1e-4a4b-4c5e-8f60-1a2b3c4d5e6f"
UPLOAD = "5b0f0c3e-7a1d-4b8e-9f2a-3c4d5e6f7a8b"


def obj(key: str, days_old: float, now: datetime = NOW) -> ListedObject:
    return ListedObject(key, 10, '"etag"', now - timedelta(days=days_old))


def build(purpose: str, **kw):
    kw.setdefault("as_of", NOW)
    kw.setdefault("now", NOW)
    kw.setdefault("bucket", f"test-{purpose}")
    kw.setdefault("environ", {})
    return policy_for(purpose, **kw)


@pytest.mark.parametrize("purpose", ["mou", "letter-backups", "letters-pdf"])
def test_protected_purposes_refuse_and_delete_nothing(purpose):
    policy = build(
        purpose, environ={"NOTIFY_REFERENCE_CHECK": "tests.plugins.reference_check:check"}
    )
    assert policy.refusal and "protected" in policy.refusal
    assert policy.judge(obj("crown.pdf", 10_000)) == (False, "protected")


@pytest.mark.parametrize("purpose", ["contact-list", "letter-attachments", "email-attachments"])
def test_reference_purposes_without_a_check_are_not_swept(purpose):
    policy = build(purpose)
    assert isinstance(policy, ReferencePolicy)
    assert policy.refusal and "NOTIFY_REFERENCE_CHECK" in policy.refusal


def test_reference_purpose_with_a_check_is_swept():
    policy = build(
        "contact-list", environ={"NOTIFY_REFERENCE_CHECK": "tests.plugins.reference_check:check"}
    )
    assert policy.refusal is None


def test_age_policy_boundary_and_env_override():
    policy = build("transient-letters")
    assert isinstance(policy, AgePolicy) and policy.retention_days == 7
    assert policy.judge(obj("a", 7.01)) == (True, "expired")
    assert policy.judge(obj("a", 6.99)) == (False, "too_recent")
    longer = build("transient-letters", environ={"NOTIFY_TRANSIENT_LETTER_RETENTION_DAYS": "30"})
    assert longer.judge(obj("a", 8)) == (False, "too_recent")


def test_age_is_measured_against_as_of():
    policy = build("transient-letters", as_of=NOW + timedelta(days=30))
    assert policy.judge(obj("a", 0)) == (True, "expired")


def test_bad_retention_env_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="NOTIFY_TRANSIENT_LETTER_RETENTION_DAYS"):
        build("transient-letters", environ={"NOTIFY_TRANSIENT_LETTER_RETENTION_DAYS": "soon"})


@pytest.mark.parametrize(
    ("key", "days", "expected"),
    [
        ("temp-abc.png", 8, (True, "temporary_logo_expired")),
        ("letters/static/images/letter-template/temp-abc.svg", 8, (True, "temporary_logo_expired")),
        ("temp-abc.png", 6, (False, "too_recent")),
        ("abc.png", 10_000, (False, "permanent_logo")),
        (
            "letters/static/images/letter-template/hm-government.svg",
            10_000,
            (False, "permanent_logo"),
        ),
        ("not-temp-abc.png", 10_000, (False, "permanent_logo")),
        ("elsewhere/temp-abc.png", 10_000, (False, "permanent_logo")),
        ("temp-dir/logo.png", 10_000, (False, "permanent_logo")),
    ],
)
def test_logo_policy_only_deletes_old_temporary_logos(key, days, expected):
    policy = build("logo")
    assert isinstance(policy, TempLogoPolicy)
    assert policy.judge(obj(key, days)) == expected


def test_reports_policy():
    own = "cleanup-audit/report-downloads/20260310T120000Z-abc-"
    policy = build("report-downloads", own_audit_prefix=own)
    assert isinstance(policy, ReportsPolicy)
    report = f"notifications_report/{UPLOAD}.csv"
    assert policy.judge(obj(report, 8)) == (True, "expired")
    assert policy.judge(obj(report, 6)) == (False, "too_recent")
    assert policy.judge(obj("cleanup-audit/csv-upload/x.jsonl", 89)) == (False, "too_recent")
    assert policy.judge(obj("cleanup-audit/csv-upload/x.jsonl", 91)) == (True, "audit_log_expired")
    assert policy.judge(obj(own + "00001.jsonl", 1000)) == (False, "current_run_audit_log")


def test_as_of_never_ages_an_audit_log_a_running_sweep_may_be_writing():
    policy = build("report-downloads", as_of=NOW + timedelta(days=400))
    fresh = obj("cleanup-audit/logo/20260310T115900Z-other-00001.jsonl", 0.01)
    assert policy.judge(fresh) == (False, "too_recent")
    assert policy.judge(obj("cleanup-audit/logo/old.jsonl", 2)) == (True, "audit_log_expired")


def test_reference_policy_grace_then_check():
    calls = []

    def fake(purpose, keys):
        calls.append((purpose, list(keys)))
        return {"b"}

    policy = build("email-attachments", reference_check=ReferenceCheck(fake, "fake"))
    assert policy.judge(obj("a", 0.5)) == (False, "reference_grace")
    assert policy.judge(obj("a", 2)) == (True, "unreferenced")
    batch = [Candidate(k, 1, NOW, "unreferenced") for k in ("a", "b", "c")]
    assert policy.confirm(batch) == [None, "referenced", None]
    assert calls == [("email-attachments", ["a", "b", "c"])]


def test_retention_overrides_parse():
    other = "0B7C1A52-2F7E-4E55-9C1D-6A5B4C3D2E1F"
    parsed = parse_retention_overrides(f" {SERVICE}=30 , {other}=2,")
    assert parsed == {SERVICE: 30, other.lower(): 2}
    assert parse_retention_overrides("") == {}


@pytest.mark.parametrize(
    "raw", ["nope=3", f"{SERVICE}", f"{SERVICE}=0", f"{SERVICE}=x", f"{SERVICE}=-1", "=3"]
)
def test_bad_retention_overrides_name_the_variable(raw):
    with pytest.raises(ConfigurationError, match="NOTIFY_CSV_RETENTION_OVERRIDES"):
        parse_retention_overrides(raw)


JOBS = policies.CsvJobState(pending=dict, complete=lambda: True)


def test_csv_policy_uses_per_service_retention():
    policy = build(
        "csv-upload",
        jobs=JOBS,
        environ={"NOTIFY_CSV_RETENTION_OVERRIDES": f"{SERVICE}=30"},
    )
    mine = f"service-{SERVICE}-notify/{UPLOAD}.csv"
    theirs = f"service-0b7c1a52-2f7e-4e55-9c1d-6a5b4c3d2e1f-notify/{UPLOAD}.csv"
    assert policy.judge(obj(mine, 10)) == (False, "too_recent")
    assert policy.judge(obj(mine, 31)) == (True, "expired")
    assert policy.judge(obj(theirs, 10)) == (True, "expired")
    assert policy.judge(obj("stray-file.txt", 10)) == (True, "expired")


def test_csv_verify_mode():
    assert build("csv-upload", jobs=JOBS).verify == "auto"
    always = build("csv-upload", jobs=JOBS, environ={"NOTIFY_CLEANUP_CSV_VERIFY": "Always"})
    assert always.verify == "always"
    with pytest.raises(ConfigurationError, match="NOTIFY_CLEANUP_CSV_VERIFY"):
        build("csv-upload", jobs=JOBS, environ={"NOTIFY_CLEANUP_CSV_VERIFY": "never"})


def test_csv_state_without_a_sentinel_api_counts_as_incomplete(monkeypatch):
    import types

    fake = types.ModuleType("tasks.csv_batches.state")
    fake.pending_uploads = dict
    monkeypatch.setitem(sys.modules, "tasks.csv_batches.state", fake)
    state = policies.load_csv_state()
    assert state.pending() == {} and state.complete() is False


def test_every_registry_purpose_has_a_policy():
    from storage.buckets import PURPOSES

    for purpose in PURPOSES:
        policy = build(purpose, jobs=JOBS)
        assert isinstance(policy, policies.Policy)
        assert policy.describe()
