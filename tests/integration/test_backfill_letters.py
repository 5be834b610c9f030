"""``notify-worker backfill letters FILE`` against moto over HTTP: in process and on a worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storage.keys import letters_pdf_key
from tests.letters_fixtures import SECRETS, exists, letters_bucket, put_letter, transient_bucket
from tests.ops_fixtures import invoke

pytestmark = pytest.mark.integration

CREATED_AT = "2024-07-15T10:00:00Z"


def line(letter, reference: str, **extra) -> str:
    kwargs = {**letter.args(reference=reference, created_at=CREATED_AT), **extra}
    return json.dumps(kwargs)


def destination(reference: str) -> str:
    return letters_pdf_key(reference, "second", CREATED_AT)


def write_file(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def run(file: Path, state: Path, *extra: str):
    result = invoke("backfill", "letters", str(file), "--state-dir", str(state), "--json", *extra)
    return result, (json.loads(result.stdout) if result.stdout.strip() else None)


def test_moves_every_letter_then_a_rerun_does_nothing(s3, redis_client, tmp_path):
    letters = [put_letter(s3) for _ in range(5)]
    invalid = put_letter(s3, status="invalid")
    lines = [line(letter, f"BF{n}") for n, letter in enumerate(letters)]
    lines.append(line(invalid, "BFX"))
    file = write_file(tmp_path / "letters.jsonl", ["", *lines, ""])  # blank lines are fine

    result, summary = run(file, tmp_path / "state")
    assert result.exit_code == 0, result.output
    assert summary["done"] == 6 and summary["statuses"] == {"ok": 5, "skipped": 1}
    for n, letter in enumerate(letters):
        assert exists(s3, letters_bucket(), destination(f"BF{n}"))
        assert not exists(s3, transient_bucket(), letter.key)
    assert exists(s3, transient_bucket(), invalid.key)  # invalid letters stay
    assert not any(secret in result.output for secret in SECRETS)

    again, summary = run(file, tmp_path / "state")
    assert again.exit_code == 0
    assert summary["already_done"] == 6 and summary["done"] == 0


def test_failures_are_listed_and_a_rerun_retries_only_them(s3, redis_client, tmp_path):
    present = [put_letter(s3) for _ in range(3)]
    missing = put_letter(s3)
    s3.delete_object(Bucket=transient_bucket(), Key=missing.key)  # not there yet
    file = write_file(
        tmp_path / "letters.jsonl",
        [line(letter, f"RT{n}") for n, letter in enumerate([*present, missing])],
    )
    result, summary = run(file, tmp_path / "state", "--concurrency", "2")
    assert result.exit_code == 1
    assert summary["done"] == 3
    [failure] = summary["failures"]
    assert failure["item_id"] == missing.upload_id
    assert failure["error_code"] == "letter_not_found"

    # The letter arrives; the same command finishes the job and touches nothing else.
    put_letter(s3, service_id=missing.service_id, upload_id=missing.upload_id)
    again, summary = run(file, tmp_path / "state")
    assert again.exit_code == 0, again.output
    assert summary["already_done"] == 3 and summary["done"] == 1
    assert exists(s3, letters_bucket(), destination("RT3"))


def test_a_bad_line_runs_nothing(s3, redis_client, tmp_path):
    good = put_letter(s3)
    file = write_file(
        tmp_path / "letters.jsonl",
        [line(good, "OK1"), '{"service_id": "nope"}', "not json", line(good, "lower-case")],
    )
    result = invoke("backfill", "letters", str(file), "--state-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "line 2:" in result.output and "line 3:" in result.output
    assert "line 4:" in result.output and "nothing was run" in result.output
    assert exists(s3, transient_bucket(), good.key)


def test_dry_run_moves_nothing(s3, redis_client, tmp_path):
    letters = [put_letter(s3) for _ in range(2)]
    file = write_file(
        tmp_path / "letters.jsonl", [line(letter, f"DR{n}") for n, letter in enumerate(letters)]
    )
    result, summary = run(file, tmp_path / "state", "--dry-run")
    assert result.exit_code == 0
    assert summary["planned"] == 2 and summary["done"] == 0
    assert all(exists(s3, transient_bucket(), letter.key) for letter in letters)


def test_enqueue_and_wait_moves_on_the_worker(celery_worker, s3, redis_client, tmp_path):
    letters = [put_letter(s3) for _ in range(3)]
    file = write_file(
        tmp_path / "letters.jsonl", [line(letter, f"EQ{n}") for n, letter in enumerate(letters)]
    )
    result, summary = run(file, tmp_path / "state", "--enqueue", "--wait", "--wait-timeout", "60")
    assert result.exit_code == 0, result.output
    assert summary["enqueue"] is True and summary["statuses"] == {"ok": 3}
    for n in range(3):
        assert exists(s3, letters_bucket(), destination(f"EQ{n}"))
