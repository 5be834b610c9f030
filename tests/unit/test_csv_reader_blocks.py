"""The reader's block splitting and its simple-block fast path equal ``readline`` line by line.

``CsvReader`` splits decoded text in blocks and hands simple blocks to its row loop whole;
``tests.csv_reference.ReferenceReader`` reads with ``readline(limit)`` one line at a time, as
it did before. On random files full of awkward lines (blank ones, quotes across lines and blocks,
every line break, non-ASCII, over-long lines with a small record limit), with small blocks so
every boundary is crossed, both must give the same header and rows, or the same error.
"""

from __future__ import annotations

import io
import random

import pytest

from tasks.csv_batches import reader as reader_module
from tasks.csv_batches.reader import CsvReader
from tasks.csv_batches.validation.columns import FileError
from tests.csv_reference import ReferenceReader as _ReferenceReader


class _Body(io.RawIOBase):
    def __init__(self, data: bytes, chunk: int) -> None:
        self._data = io.BytesIO(data)
        self._chunk = chunk

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        piece = self._data.read(min(len(buffer), self._chunk))
        buffer[: len(piece)] = piece
        return len(piece)


def _outcome(cls: type[CsvReader], data: bytes, chunk: int, max_rows: int):
    rows: list = []
    try:
        reader = cls(_Body(data, chunk), max_rows=max_rows)
        rows.append(reader.header)
        rows.extend(reader)
    except FileError as error:
        return ("error", error.code, error.message, rows)
    return ("ok", rows)


PLAIN = ["07700900123", "Ann", "REF-1", "a@b.com", "x y", "0", "-1"]
AWKWARD = [
    "",
    " ",
    "\t",
    " lead",
    "trail ",
    '"q"',
    '"a,b"',
    '"multi\nline"',
    '"multi\r\nline"',
    '"open',
    'close"',
    '""',
    "caf\u00e9",
    "\u00a0",
    "\ufeff",
    "\x0b",
    "\x0c",
    "\x1c",
    "\u2028",
    "\x85",
]
BREAKS = ["\n", "\r\n", "\n", "\r\n", "\r"]


def _random_file(rng: random.Random, simple_share: float, long_line: int) -> bytes:
    lines = []
    for _ in range(rng.randrange(1, 60)):
        kind = rng.random()
        if kind < simple_share:
            cells = [rng.choice(PLAIN) for _ in range(rng.randrange(1, 5))]
            if rng.random() < 0.2:
                cells[0] = ""  # a line starting with a comma is content
        elif kind < simple_share + 0.05:
            cells = [rng.choice(" ,\t") * rng.randrange(0, 4)]  # blank lines
        elif kind < simple_share + 0.08:
            cells = ["w" * rng.randrange(long_line - 5, long_line + 5)]
        else:
            cells = [rng.choice(AWKWARD + PLAIN) for _ in range(rng.randrange(0, 5))]
        lines.append(",".join(cells) + rng.choice(BREAKS))
    text = "".join(lines)
    if rng.random() < 0.3:
        text = rng.choice(["", " \n", ",,\r\n", "\ufeff"]) + text
    if rng.random() < 0.3:
        text = text.rstrip("\r\n") + rng.choice(["", "\n", "\n\n", " \n,,\n", "\r"])
    return text.encode("utf-8")


def _counted(cls: type[CsvReader], data: bytes, chunk: int, max_rows: int):
    """What the scan pass sees: the header and the row count, or the error."""
    try:
        reader = cls(_Body(data, chunk), max_rows=max_rows)
        header = reader.header
        counts = [rows for rows, _ in reader.counted()]
    except FileError as error:
        return ("error", error.code, error.message)
    assert counts == sorted(counts)
    return ("ok", header, counts[-1])


def _as_counted(outcome):
    if outcome[0] == "error":
        return outcome[:3]
    return ("ok", outcome[1][0], len(outcome[1]) - 1)


def _count_blocks(monkeypatch) -> list[int]:
    """Record how many rows each simple block handed to the row loop carried."""
    handed: list[int] = []
    original = CsvReader._lines

    def counting(self):
        for item in original(self):
            if item.__class__ is list:
                handed.append(len(item))
            yield item

    monkeypatch.setattr(CsvReader, "_lines", counting)
    return handed


@pytest.mark.parametrize("seed", range(6))
def test_block_reading_equals_readline_on_random_files(seed, monkeypatch):
    rng = random.Random(seed)
    # A small record limit, so that over-long lines and records (and their pieces) are common.
    record_limit = rng.choice([40, 64, 100])
    monkeypatch.setattr(reader_module, "MAX_RECORD_BYTES", record_limit)
    monkeypatch.setattr(reader_module, "_LINE_LIMIT", record_limit + 3)
    handed = _count_blocks(monkeypatch)
    for _ in range(500):
        monkeypatch.setattr(reader_module, "_TEXT_BLOCK", rng.choice([1, 2, 7, 16, 50, 200, 4096]))
        data = _random_file(rng, simple_share=rng.choice([0.5, 0.9, 1.0]), long_line=record_limit)
        chunk = rng.choice([1, 3, 64, 1 << 16])
        max_rows = rng.choice([5, 30, 1000])
        expected = _outcome(_ReferenceReader, data, chunk, max_rows)
        assert _outcome(CsvReader, data, chunk, max_rows) == expected, data
        assert _counted(CsvReader, data, chunk, max_rows) == _as_counted(expected), data
    assert len(handed) > 40 and sum(handed) > 80  # the fast path was taken, often


def test_simple_blocks_are_taken_whole_and_rows_match(monkeypatch):
    """A clean 20,000-row file in 4 KiB blocks: the fast path carries nearly every row."""
    rows = [f"0770090{n:04d},Person {n},{'' if n % 7 else 'x'}" for n in range(20_000)]
    rows[5] = ",no recipient,"  # content lines may start with a comma
    text = "phone number,name,ref\r\n" + "\r\n".join(rows) + "\r\n"
    monkeypatch.setattr(reader_module, "_TEXT_BLOCK", 4096)
    handed = _count_blocks(monkeypatch)
    got = _outcome(CsvReader, text.encode(), 1 << 16, 10**6)
    assert got == _outcome(_ReferenceReader, text.encode(), 1 << 16, 10**6)
    assert got[1][0] == ["phone number", "name", "ref"] and len(got[1]) == 20_001
    assert sum(handed) > 19_000


def test_a_quoted_cell_across_a_simple_block_keeps_its_line_breaks(monkeypatch):
    """The csv module pulling lines mid-record gets them one by one, breaks included."""
    middle = "".join(f"plain line {n}\r\n" for n in range(300))
    text = f'h,name\r\n1,"start\r\n{middle}end"\r\n2,b\r\n'
    monkeypatch.setattr(reader_module, "_TEXT_BLOCK", 256)
    got = _outcome(CsvReader, text.encode(), 1 << 16, 100)
    assert got == _outcome(_ReferenceReader, text.encode(), 1 << 16, 100)
    assert got[1][1] == (1, ["1", f"start\r\n{middle}end"])
    assert got[1][2] == (2, ["2", "b"])


@pytest.mark.parametrize("where", [3, 150])
def test_row_limits_inside_a_simple_block_name_the_same_row(where, monkeypatch):
    monkeypatch.setattr(reader_module, "_TEXT_BLOCK", 1024)
    lines = [f"0770090{n:04d},x" for n in range(300)]
    wide = list(lines)
    wide[where - 1] = ",".join(["c"] * (reader_module.MAX_COLUMNS + 1))
    for text, max_rows in (("\n".join(wide), 10**6), ("\n".join(lines), where)):
        data = ("h,name\n" + text + "\n").encode()
        got = _outcome(CsvReader, data, 1 << 16, max_rows)
        assert got == _outcome(_ReferenceReader, data, 1 << 16, max_rows)
        assert got[0] == "error" and got[1] in ("too_many_columns", "too_many_rows")
        assert _counted(CsvReader, data, 1 << 16, max_rows) == got[:3]


def test_counting_a_block_with_a_wide_row_at_the_row_limit_reports_columns_first(monkeypatch):
    """The row loop checks a row's columns before the row limit: so must the bulk count."""
    monkeypatch.setattr(reader_module, "_TEXT_BLOCK", 1024)
    lines = [f"0770090{n:04d},x" for n in range(300)]
    lines[99] = ",".join(["c"] * (reader_module.MAX_COLUMNS + 1))  # row 100
    data = ("h,name\n" + "\n".join(lines) + "\n").encode()
    for max_rows in (98, 99, 100, 1000):
        expected = _outcome(_ReferenceReader, data, 1 << 16, max_rows)
        assert _counted(CsvReader, data, 1 << 16, max_rows) == _as_counted(expected)
    assert _as_counted(_outcome(_ReferenceReader, data, 1 << 16, 99))[1] == "too_many_columns"
