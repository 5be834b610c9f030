"""``backfill letters FILE``: JSON lines parsed and validated line by line; the in-process run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from storage.errors import InvalidInput
from tasks.letters.backfill import (
    MAX_LINE_CHARS,
    BadLine,
    check_letter_file,
    iter_letter_jobs,
    run_letter_job,
)
from tests.letters_fixtures import (
    CREATED_AT,
    DEST_KEY,
    exists,
    letters_bucket,
    put_letter,
    transient_bucket,
)

SID = "0b9a6a51-59a1-4e8b-9d0c-1d2f9a0c0001"
UID = "0b9a6a51-59a1-4e8b-9d0c-1d2f9a0c0002"
UID2 = "0b9a6a51-59a1-4e8b-9d0c-1d2f9a0c0003"
GOOD = {
    "service_id": SID,
    "upload_id": UID,
    "reference": "ABC123",
    "postage": "second",
    "created_at": CREATED_AT,
}


def write(tmp_path: Path, *lines: str | dict, name: str = "letters.jsonl") -> Path:
    path = tmp_path / name
    path.write_text(
        "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines),
        encoding="utf-8",
    )
    return path


def test_yields_upload_id_and_kwargs_skipping_blank_lines(tmp_path):
    path = write(tmp_path, GOOD, "", "   ", {**GOOD, "upload_id": UID2, "backup": True})
    assert list(iter_letter_jobs(path)) == [
        (UID, GOOD),
        (UID2, {**GOOD, "upload_id": UID2, "backup": True}),
    ]


def test_byte_order_mark_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\r\n")
    assert [uid for uid, _ in iter_letter_jobs(path)] == [UID]


def test_file_is_read_lazily(tmp_path):
    path = write(tmp_path, GOOD, "not json")
    jobs = iter_letter_jobs(path)
    assert next(jobs)[0] == UID  # the bad second line is not read yet
    with pytest.raises(BadLine):
        next(jobs)


@pytest.mark.parametrize(
    ("line", "code", "words"),
    [
        ("{not json", "invalid_json", "not JSON"),
        ("[1, 2]", "invalid_line", "JSON object"),
        ('"text"', "invalid_line", "JSON object"),
        (
            json.dumps({k: v for k, v in GOOD.items() if k != "postage"}),
            "missing_argument",
            "postage",
        ),
        (json.dumps({**GOOD, "reference": None}), "missing_argument", "reference"),
        (json.dumps({**GOOD, "recipient": "x"}), "unknown_argument", "recipient"),
        (json.dumps({**GOOD, "upload_id": "../x"}), "invalid_id", "upload_id"),
        (json.dumps({**GOOD, "service_id": 7}), "invalid_id", "service_id"),
        (json.dumps({**GOOD, "reference": "abc"}), "invalid_reference", "reference"),
        (json.dumps({**GOOD, "postage": "third"}), "invalid_postage", "postage"),
        (json.dumps({**GOOD, "created_at": "soon"}), "invalid_timestamp", "created_at"),
        (json.dumps({**GOOD, "backup": "yes"}), "invalid_backup", "backup"),
    ],
)
def test_bad_line_is_reported_with_its_number(tmp_path, line, code, words):
    path = write(tmp_path, GOOD, "", line, GOOD)
    with pytest.raises(BadLine) as caught:
        list(iter_letter_jobs(path))
    assert isinstance(caught.value, InvalidInput)
    assert caught.value.line_number == 3
    assert caught.value.code == code
    assert caught.value.message.startswith("line 3: ")
    assert words in caught.value.message


def test_oversized_line_is_refused_without_reading_it_whole(tmp_path):
    path = write(tmp_path, GOOD, "x" * (MAX_LINE_CHARS * 3), GOOD)
    with pytest.raises(BadLine) as caught:
        list(iter_letter_jobs(path))
    assert caught.value.code == "line_too_long"
    assert caught.value.line_number == 2


def test_check_reports_every_bad_line(tmp_path):
    path = write(
        tmp_path,
        GOOD,
        "{oops",
        {**GOOD, "postage": "third"},
        "y" * (MAX_LINE_CHARS + 10),
        {**GOOD, "upload_id": UID2},
        "[]",
    )
    good, bad = check_letter_file(path)
    assert good == 2
    assert [(e.line_number, e.code) for e in bad] == [
        (2, "invalid_json"),
        (3, "invalid_postage"),
        (4, "line_too_long"),
        (6, "invalid_line"),
    ]
    _, first = check_letter_file(path, limit=1)
    assert len(first) == 1


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(InvalidInput) as missing:
        list(iter_letter_jobs(tmp_path / "nope.jsonl"))
    assert missing.value.code == "unreadable_file"
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"reference": "\xe9"}\n')
    with pytest.raises(InvalidInput) as latin:
        list(iter_letter_jobs(path))
    assert latin.value.code == "not_utf8"


# --- running a job in process -------------------------------------------------------------------


@pytest.fixture
def client(letters_s3: Any) -> Any:
    return letters_s3


def test_run_letter_job_moves_and_reports_failures_as_results(client, tmp_path):
    letter = put_letter(client)
    missing = {**letter.args(), "upload_id": UID2, "reference": "OTHER1"}
    path = write(tmp_path, letter.args(), missing)

    results = [run_letter_job(kwargs) for _, kwargs in iter_letter_jobs(path)]

    assert results[0]["status"] == "ok"
    assert results[0]["destination_key"] == DEST_KEY
    assert results[1]["status"] == "failed"
    assert results[1]["error_code"] == "letter_not_found"
    assert "retryable" not in results[1]
    assert not exists(client, transient_bucket(), letter.key)
    assert exists(client, letters_bucket(), DEST_KEY)
    # A rerun (resume without a checkpoint) is harmless.
    assert run_letter_job(letter.args())["already_moved"] is True


def test_run_letter_job_marks_transient_faults_retryable(client, monkeypatch):
    from storage.errors import S3Transient
    from tasks.letters import backfill

    def busy(**_: Any) -> dict:
        raise S3Transient("S3 is busy")

    monkeypatch.setattr(backfill, "move_letter", busy)
    result = run_letter_job(dict(GOOD))
    assert result["status"] == "failed"
    assert result["error_code"] == "s3_transient"
    assert result["retryable"] is True
