"""What a backfill item is, and the JSON-lines reading the workflows' item sources share.

Each workflow's item source (``tasks.<workflow>.backfill``) yields ``BackfillItem``s that the
backfill framework (``worker.backfill.framework``) runs in-process or enqueues. An item the source
already knows is bad carries its error (reported as failed, never run). Files are checked whole
before anything runs (``check_jsonl``), so a typo on line 90,000 does not stop a run half-way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.errors import InvalidInput, NotifyError

MAX_LINE_CHARS = 64 * 1024
MAX_BAD_LINES_SHOWN = 20


@dataclass(frozen=True)
class BackfillItem:
    """One unit of work: ``kwargs`` are the task's keyword arguments (JSON).

    ``error`` marks an item the source already knows is bad (it is reported as failed, never
    run); ``queue`` overrides the task's queue when enqueued (e.g. a big CSV job's bulk queue).
    """

    id: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    error: NotifyError | None = None


# --- JSON-lines files --------------------------------------------------------------------------


def read_lines(path: str | Path) -> Iterator[tuple[int, str | None]]:
    """(line number, text) of the non-blank lines, one in memory at a time; a line over
    ``MAX_LINE_CHARS`` comes out as ``None`` (never held whole)."""
    try:
        handle = open(path, encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except OSError as error:
        raise InvalidInput(
            f"cannot read {path}: {error.strerror}.", code="unreadable_file"
        ) from None
    with handle:
        number = 0
        try:
            while text := handle.readline(MAX_LINE_CHARS + 1):
                number += 1
                if len(text) > MAX_LINE_CHARS and not text.endswith("\n"):
                    while (rest := handle.readline(MAX_LINE_CHARS)) and not rest.endswith("\n"):
                        pass
                    yield number, None
                elif text.strip():
                    yield number, text
        except UnicodeDecodeError:
            raise InvalidInput(f"{path} is not UTF-8 text.", code="not_utf8") from None


def parse_json_line(text: str | None, number: int) -> Any:
    if text is None:
        raise bad_line(number, f"longer than {MAX_LINE_CHARS} characters.", "line_too_long")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise bad_line(number, f"not JSON ({error.msg}).", "invalid_json") from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) of each non-blank line; ``InvalidInput`` naming the line
    for one that is not JSON or too long."""
    for number, text in read_lines(path):
        yield number, parse_json_line(text, number)


def check_jsonl(
    path: str | Path, parse: Callable[[Any, int], Any]
) -> tuple[int, list[InvalidInput]]:
    """Check the whole file with ``parse(value, line_number)`` without stopping at the first
    bad line: (number of good lines, the first ``MAX_BAD_LINES_SHOWN`` bad ones)."""
    good = 0
    bad: list[InvalidInput] = []
    for number, text in read_lines(path):
        try:
            parse(parse_json_line(text, number), number)
            good += 1
        except InvalidInput as error:
            bad.append(error)
            if len(bad) >= MAX_BAD_LINES_SHOWN:
                break
    return good, bad


def bad_line(number: int, message: str, code: str = "invalid_line") -> InvalidInput:
    return InvalidInput(f"line {number}: {message}", code=code)


def json_object(value: Any, number: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_line(number, "must be a JSON object.")
    return value
