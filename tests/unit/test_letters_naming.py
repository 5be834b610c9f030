"""The printing naming rule (docs/storage.md): folder by London date with a 17:30 cut-off,
timestamp in UTC, whole key upper case. 2024's clock changes: 31 March and 27 October, 01:00 UTC.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import pytest

from storage.errors import InvalidInput
from storage.keys import letter_print_day, letters_pdf_key


@pytest.mark.parametrize(
    ("created_at", "folder"),
    [
        # winter (GMT = UTC): the cut-off is 17:30 UTC
        ("2024-01-15T17:29:59Z", "2024-01-15"),
        ("2024-01-15T17:30:00Z", "2024-01-15"),  # 17:30:00 itself stays
        ("2024-01-15T17:30:01Z", "2024-01-16"),
        # summer (BST = UTC+1): the cut-off is 16:30 UTC
        ("2024-07-15T16:30:00Z", "2024-07-15"),
        ("2024-07-15T16:30:01Z", "2024-07-16"),
        ("2024-07-15T17:00:00Z", "2024-07-16"),  # 17:00 UTC but 18:00 in London
        ("2024-07-15T23:30:00Z", "2024-07-16"),  # already the 16th in London, before cut-off
        # the day before the spring change, and the day itself
        ("2024-03-30T17:30:00Z", "2024-03-30"),
        ("2024-03-30T23:30:00Z", "2024-03-31"),
        ("2024-03-31T00:30:00Z", "2024-03-31"),  # 00:30 GMT
        ("2024-03-31T01:30:00Z", "2024-03-31"),  # 02:30 BST: 01:xx London never happened
        ("2024-03-31T16:30:00Z", "2024-03-31"),  # 17:30:00 BST stays
        ("2024-03-31T16:30:01Z", "2024-04-01"),
        ("2024-03-31T17:00:00Z", "2024-04-01"),  # a UTC-only rule would keep it
        # the day before the autumn change, and the day itself
        ("2024-10-26T16:30:00Z", "2024-10-26"),
        ("2024-10-26T16:30:01Z", "2024-10-27"),
        ("2024-10-26T23:30:00Z", "2024-10-27"),  # 00:30 BST on the 27th
        ("2024-10-27T00:30:00Z", "2024-10-27"),  # 01:30 BST (the first one)
        ("2024-10-27T01:30:00Z", "2024-10-27"),  # 01:30 GMT (the second one)
        ("2024-10-27T16:45:00Z", "2024-10-27"),  # a BST-only rule would move it
        ("2024-10-27T17:30:00Z", "2024-10-27"),  # 17:30:00 GMT stays
        ("2024-10-27T17:30:01Z", "2024-10-28"),
        # moves across month, leap day and year ends (no weekend skipping: the next day)
        ("2024-02-28T18:00:00Z", "2024-02-29"),
        ("2024-02-29T18:00:00Z", "2024-03-01"),
        ("2024-12-31T18:00:00Z", "2025-01-01"),
        # sub-second: strictly after 17:30:00 means even a microsecond after
        ("2024-01-15T17:30:00.000001Z", "2024-01-16"),
        # other spellings of the same kind of moment
        ("2024-07-15T18:30:00+01:00", "2024-07-16"),  # 17:30 UTC = 18:30 BST
        ("2024-01-15T12:30:00-05:00", "2024-01-15"),  # 17:30 UTC exactly
        ("2024-01-15T17:30:01", "2024-01-16"),  # no zone means UTC
        ("2024-01-15 17:30:00", "2024-01-15"),
    ],
)
def test_folder_is_the_london_print_day(created_at: str, folder: str) -> None:
    key = letters_pdf_key("ABC123", "second", created_at)
    assert key.split("/")[0] == folder


@pytest.mark.parametrize(
    ("created_at", "stamp"),
    [
        ("2024-07-15T23:30:00Z", "20240715233000"),  # UTC, not London (which is the 16th)
        ("2024-07-15T18:30:45+01:00", "20240715173045"),
        ("2024-10-27T01:30:00Z", "20241027013000"),
        ("2024-01-15T17:30:00.999999Z", "20240115173000"),  # seconds precision, truncated
        ("2024-03-31T01:30:00", "20240331013000"),
    ],
)
def test_timestamp_part_is_created_at_in_utc(created_at: str, stamp: str) -> None:
    key = letters_pdf_key("ABC123", "first", created_at)
    assert key.endswith(f".C.{stamp}.PDF")


@pytest.mark.parametrize(
    ("postage", "klass"),
    [
        ("first", "1"),
        ("second", "2"),
        ("economy", "ECONOMY"),
        ("europe", "E"),
        ("rest-of-world", "N"),
    ],
)
def test_postage_classes(postage: str, klass: str) -> None:
    key = letters_pdf_key("REF1", postage, "2024-07-15T10:00:00Z")
    assert key == f"2024-07-15/NOTIFY.REF1.D.{klass}.C.20240715100000.PDF"


def test_whole_key_is_upper_case_and_exact() -> None:
    key = letters_pdf_key("ABC123XYZ0", "economy", "2024-03-31T16:30:00Z")
    assert key == "2024-03-31/NOTIFY.ABC123XYZ0.D.ECONOMY.C.20240331163000.PDF"
    assert key == key.upper()


def test_accepts_aware_and_naive_datetimes() -> None:
    aware = datetime(2024, 7, 15, 16, 30, 1, tzinfo=UTC)
    naive = datetime(2024, 7, 15, 16, 30, 1)
    expected = "2024-07-16/NOTIFY.A1.D.1.C.20240715163001.PDF"
    assert letters_pdf_key("A1", "first", aware) == expected
    assert letters_pdf_key("A1", "first", naive) == expected


def test_print_day_treats_naive_as_utc_whatever_the_machine_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        # 15:00 UTC is 15:00 in London; read as New York time it would be 20:00 UTC, next day.
        assert letter_print_day(datetime(2024, 1, 15, 15, 0)) == date(2024, 1, 15)
        assert letter_print_day(datetime(2024, 1, 15, 17, 30, 1)) == date(2024, 1, 16)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize(
    "reference",
    ["A", "0", "Z" * 32, "ABC123", "2024"],
)
def test_good_references(reference: str) -> None:
    assert f"NOTIFY.{reference}.D." in letters_pdf_key(reference, "second", "2024-01-01T00:00Z")


@pytest.mark.parametrize(
    "reference",
    ["", "abc123", "Abc", "A" * 33, "AB-12", "AB 12", "AB.12", "../X", "ÄBC", None, 123],
)
def test_bad_references_are_refused(reference: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        letters_pdf_key(reference, "second", "2024-01-01T00:00:00Z")  # type: ignore[arg-type]
    assert caught.value.code == "invalid_reference"


@pytest.mark.parametrize("postage", ["First", "SECOND", "second-class", "", None, "2", "world"])
def test_unknown_postage_is_refused(postage: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        letters_pdf_key("ABC", postage, "2024-01-01T00:00:00Z")  # type: ignore[arg-type]
    assert caught.value.code == "invalid_postage"


@pytest.mark.parametrize(
    "created_at", ["", "yesterday", "2024-13-01T00:00:00Z", "2024-01-01T25:00:00Z", None, 17]
)
def test_unparseable_created_at_is_refused(created_at: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        letters_pdf_key("ABC", "first", created_at)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_timestamp"
