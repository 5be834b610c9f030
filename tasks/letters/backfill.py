"""The letters side of ``notify-worker backfill letters FILE``.

FILE holds JSON lines, one object of ``notify.letters.move_transient`` keyword arguments per
line (the transient bucket alone does not know a letter's reference, postage or created_at):

    {"service_id": "…", "upload_id": "…", "reference": "ABC123", "postage": "second",
     "created_at": "2025-03-01T12:00:00Z", "backup": false}

Blank lines are ignored. Every line is checked as the task would check it (ids, reference,
postage, created_at) before anything runs, and a bad line is reported with its line number.
The file is read line by line, so its size does not matter. The shared backfill framework
(``worker.backfill``) adds the progress bar, resume, ``--dry-run`` and ``--concurrency``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.errors import InvalidInput, NotifyError
from tasks.letters.moves import move_letter, plan_move
from worker.runtime.backfill_items import MAX_LINE_CHARS, read_lines

REQUIRED_FIELDS = ("service_id", "upload_id", "reference", "postage", "created_at")
OPTIONAL_FIELDS = ("backup",)


class BadLine(InvalidInput):
    """A line of the backfill file that cannot become a move; carries its line number."""

    def __init__(self, line_number: int, message: str, *, code: str = "invalid_line") -> None:
        super().__init__(f"line {line_number}: {message}", code=code)
        self.line_number = line_number


@dataclass(frozen=True)
class LetterLine:
    line_number: int
    upload_id: str
    kwargs: dict[str, Any]


def parse_letter_line(text: str, line_number: int) -> dict[str, Any]:
    """One JSON line to ``move_letter`` keyword arguments, validated; raises ``BadLine``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadLine(line_number, f"not JSON ({error.msg}).", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadLine(line_number, "must be a JSON object of task arguments.")
    unknown = sorted(str(k)[:40] for k in data if k not in REQUIRED_FIELDS + OPTIONAL_FIELDS)
    if unknown:
        raise BadLine(
            line_number, f"unknown field(s): {', '.join(unknown[:5])}.", code="unknown_argument"
        )
    missing = [name for name in REQUIRED_FIELDS if name not in data]
    if missing:
        raise BadLine(
            line_number, f"missing field(s): {', '.join(missing)}.", code="missing_argument"
        )
    kwargs = {name: data[name] for name in REQUIRED_FIELDS}
    if "backup" in data:
        kwargs["backup"] = data["backup"]
    try:
        plan_move(**kwargs)
    except InvalidInput as error:
        raise BadLine(line_number, error.message, code=error.code) from None
    return kwargs


def _too_long(number: int) -> BadLine:
    return BadLine(number, f"longer than {MAX_LINE_CHARS} characters.", code="line_too_long")


def iter_letter_lines(path: str | Path) -> Iterator[LetterLine]:
    """Every line of FILE as a validated move; raises ``BadLine`` at the first bad one."""
    for number, text in read_lines(path):
        if text is None:
            raise _too_long(number)
        kwargs = parse_letter_line(text, number)
        yield LetterLine(number, kwargs["upload_id"], kwargs)


def iter_letter_jobs(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(upload_id, move_letter kwargs)`` for each line; raises ``BadLine`` with its number."""
    for line in iter_letter_lines(path):
        yield line.upload_id, line.kwargs


def check_letter_file(path: str | Path, *, limit: int = 100) -> tuple[int, list[BadLine]]:
    """Check the whole file without stopping at the first bad line, for a dry run.

    Returns (number of good lines, the first ``limit`` bad lines).
    """
    good = 0
    bad: list[BadLine] = []
    for number, text in read_lines(path):
        try:
            if text is None:
                raise _too_long(number)
            parse_letter_line(text, number)
            good += 1
        except BadLine as error:
            bad.append(error)
            if len(bad) >= limit:
                break
    return good, bad


def run_letter_job(kwargs: dict[str, Any], **options: Any) -> dict[str, Any]:
    """Run one move in process (the backfill's in-process mode); never raises a NotifyError.

    A refusal comes back as the task's ``failed`` result; a transient fault too, marked
    ``retryable`` (the framework does not checkpoint failures, so a rerun retries it).
    """
    try:
        return move_letter(**kwargs, **options)
    except NotifyError as error:
        result = error.as_result()
        if error.retryable:
            result["retryable"] = True
        return result
