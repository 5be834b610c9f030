"""Key builders refuse anything that is not a UUID (or a strict pattern) before any S3 call."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storage import keys
from storage.errors import InvalidInput

SID = "6c6e2b6c-4bd4-4a65-9b5c-2f3e4a1b7c01"
UID = "0f2c9a40-8d0b-4c55-a4e6-1b2c3d4e5f60"

BAD_IDS = [
    "",
    "not-a-uuid",
    "../etc/passwd",
    f"{UID}/../x",
    f"{UID}\n",
    UID.replace("-", ""),
    "{" + UID + "}",
    f"urn:uuid:{UID}",
    None,
    123,
    UID + "0",
]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize(
    "builder",
    [
        lambda bad: keys.csv_upload_key(bad, UID),
        lambda bad: keys.csv_upload_key(SID, bad),
        lambda bad: keys.transient_letter_key(bad, UID),
        lambda bad: keys.transient_letter_key(SID, bad),
        lambda bad: keys.letter_backup_key(bad),
        lambda bad: keys.email_attachment_key(SID, bad),
        lambda bad: keys.report_key("uploads", bad),
    ],
)
def test_builders_refuse_non_uuids(builder, bad):
    with pytest.raises(InvalidInput) as caught:
        builder(bad)
    assert caught.value.code == "invalid_id"


def test_layouts():
    assert keys.csv_upload_key(SID, UID) == f"service-{SID}-notify/{UID}.csv"
    assert keys.transient_letter_key(SID, UID) == f"service-{SID}/{UID}.pdf"
    assert keys.letter_attachment_key(SID, UID) == f"service-{SID}/{UID}.pdf"
    assert keys.letter_backup_key(UID) == f"{UID}.pdf"
    assert keys.email_attachment_key(SID, UID) == f"{SID}/{UID}"
    assert keys.report_key("job-outcome", UID) == f"job-outcome_report/{UID}.csv"
    assert keys.logo_key("temp-a.png") == "temp-a.png"
    assert keys.logo_key("a.png", letter=True) == "letters/static/images/letter-template/a.png"


def test_parsers_round_trip_and_refuse_other_keys():
    assert keys.parse_csv_upload_key(keys.csv_upload_key(SID, UID)) == (SID, UID)
    assert keys.parse_transient_letter_key(keys.transient_letter_key(SID, UID)) == (SID, UID)
    assert keys.parse_email_attachment_key(f"{SID}/{UID}") == (SID, UID)
    assert keys.parse_report_key(f"uploads_report/{UID}.csv") == ("uploads", UID)
    assert keys.parse_csv_upload_key(f"service-{SID}-notify/../{UID}.csv") is None
    assert keys.parse_csv_upload_key(f"service-{SID}-notify/{UID}.csv.bak") is None
    assert keys.parse_report_key("cleanup-audit/x.jsonl") is None


@pytest.mark.parametrize("kind", ["", "Uploads", "up_loads", "../x", "a/b", "x" * 65, "-a"])
def test_report_kind_shape(kind):
    with pytest.raises(InvalidInput):
        keys.report_key(kind, UID)


@pytest.mark.parametrize("name", ["../a.png", "a/b.png", "", ".hidden", "a..png"])
def test_logo_names(name):
    with pytest.raises(InvalidInput):
        keys.logo_key(name)


def test_temporary_logo_is_judged_by_the_last_segment():
    assert keys.is_temporary_logo("temp-x.png")
    assert keys.is_temporary_logo("letters/static/images/letter-template/temp-x.svg")
    assert not keys.is_temporary_logo("x-temp-.png")
    assert not keys.is_temporary_logo("temp-dir/x.png")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2026-03-01T10:00:00", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("2026-03-01T11:00:00+01:00", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_naive_means_utc(text, expected):
    assert keys.parse_timestamp(text) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", None, 5])
def test_parse_timestamp_refuses_garbage(text):
    with pytest.raises(InvalidInput):
        keys.parse_timestamp(text)


def test_isoformat_is_utc_with_z():
    moment = datetime(2026, 3, 1, 11, 0, 0, 123, tzinfo=keys.LONDON)
    assert keys.isoformat(moment) == "2026-03-01T11:00:00Z"
