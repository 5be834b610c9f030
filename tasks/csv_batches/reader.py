"""Streaming CSV reading: bytes in, header and rows out, file-level errors as ``FileError``.

One object is read as a stream of lines (never the whole file): raw chunks are checked for NUL
bytes, decoded as UTF-8 incrementally and split into lines the way the ``csv`` module expects
(``newline=""``). A line without a quote character is one record and is split on commas (what
``csv.reader`` would return, faster); a record with quotes goes through ``csv.reader``, which
may pull more lines for quoted newlines. Memory holds one chunk, one record and a short
run-length summary of trailing blank lines, whatever the file's size.

Lines come from blocks of decoded text (``_TEXT_BLOCK`` characters), split in C: the same
lines, piece for piece, as ``readline(limit)`` would return (tests compare the two on random
files). While rows are being read, a block that is plainly simple
(ASCII, no quote, no line break but "\n" and "\r\n", no blank line, shorter than the record
limit) goes to ``__iter__`` whole, as a list of
record texts, and is split there in a tight loop: most of a clean file is read that way.

The whole file has whitespace (obscure kinds included, which covers a byte-order mark) and
commas stripped from both ends, as the web app does (docs/validation.md, "Cells and files"). The
start is easy; for the end, lines made only of those characters are held back (run-length
encoded) until a line with content follows, and dropped at the end of the file.

File-level errors raised here: ``not_utf8``, ``not_csv`` (NUL bytes, unparseable CSV),
``line_too_long`` (a record over 1 MiB), ``too_many_columns`` (over 1,000), ``no_rows``,
``too_many_rows``.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
import string
from collections.abc import Iterator
from typing import Any, BinaryIO

from tasks.csv_batches.validation.columns import FileError
from tasks.csv_batches.validation.recipients import OBSCURE_WHITESPACE

MAX_RECORD_BYTES = 1024 * 1024
MAX_COLUMNS = 1000
# Characters stripped from both ends of the whole file.
FILE_STRIP = string.whitespace + OBSCURE_WHITESPACE + ","
_STRIP_SET = frozenset(FILE_STRIP)
# Distinct trailing blank-line shapes held in memory before we give up holding them back (a file
# would need that many *different* blank lines in a row; they are then read as blank rows).
MAX_HELD_BLANK_SHAPES = 4096
_READ_CHUNK = 256 * 1024
_TEXT_BLOCK = 256 * 1024  # characters of decoded text split into lines at a time
# Line breaks of str.splitlines() that are not line breaks to the csv module.
_ASCII_OTHER_BREAKS = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e")
_OTHER_BREAKS = (*_ASCII_OTHER_BREAKS, "\x85", "\u2028", "\u2029")
# A line of the csv module: up to and including its break.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)")
# In an ASCII block of "\n" or "\r\n" lines without "\x0b" and "\x0c": a blank line (only
# whitespace and commas), first or later. A lone "\r" (a line break of its own).
_BLANK_FIRST_LINE = re.compile(r"[ \t,]*\r?\n")
_BLANK_LATER_LINE = re.compile(r"\n[ \t,]*\r?\n")
_LONE_CR = re.compile(r"\r(?!\n)")

# The csv module refuses fields over 128 KiB by default; our limit is per record.
csv.field_size_limit(max(csv.field_size_limit(), MAX_RECORD_BYTES + 16))


class _ByteGuard(io.RawIOBase):
    """Raw bytes from ``body``, checked before anything parses them, with exact positions.

    A NUL byte anywhere is ``not_csv`` (no downstream database stores one); bytes that are not
    UTF-8 are ``not_utf8``. Checking here, where the file offset is known, lets both messages
    name the line of the file, which the text layer (decoding ahead in chunks) cannot.
    """

    def __init__(self, body: Any) -> None:
        self._body = body
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._lines_before = 0  # line breaks in the bytes already passed on
        self._ended_cr = False
        self._held = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        if not data:
            self._decode(b"", final=True)
            return 0
        nul = data.find(b"\x00")
        if nul >= 0:
            raise FileError(
                "not_csv",
                f"The file contains NUL bytes ({_where(self._line_at(data, nul))}), so it is not "
                "a CSV file: is it a spreadsheet or another binary file? Save it as CSV and "
                "upload it again.",
            )
        self._decode(data)
        self._lines_before += self._breaks(data)
        self._ended_cr = data.endswith(b"\r")
        n = len(data)
        buffer[:n] = data
        return n

    def _decode(self, data: bytes, final: bool = False) -> None:
        if data.isascii() and not self._held:
            return  # ASCII is UTF-8: nothing to check (and nothing to allocate)
        try:
            self._decoder.decode(data, final)
            self._held = bool(self._decoder.getstate()[0])  # a sequence cut by the chunk end
        except UnicodeDecodeError as error:
            # error.object may start with an incomplete sequence held from the last chunk: it
            # holds no line break, so counting breaks before error.start stays right.
            line = self._line_at(error.object, error.start)
            raise FileError(
                "not_utf8",
                f"The file is not UTF-8 text: invalid bytes {_where(line)}. Save it as "
                "'CSV UTF-8' and upload it again.",
            ) from None

    def _breaks(self, data: bytes) -> int:
        """Line breaks in ``data``: "\\n", "\\r\\n" and a lone "\\r" count one each."""
        breaks = data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
        if self._ended_cr and data.startswith(b"\n"):
            breaks -= 1  # the "\\r" ending the last chunk was half of this "\\r\\n"
        return breaks

    def _line_at(self, data: bytes, offset: int) -> int:
        return self._lines_before + self._breaks(data[:offset]) + 1

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            super().close()


def _too_many_columns(row_number: int, columns: int) -> FileError:
    return FileError(
        "too_many_columns",
        f"Row {row_number:,} has {columns:,} columns; at most {MAX_COLUMNS:,} are allowed.",
    )


def _too_many_rows(max_rows: int) -> FileError:
    return FileError(
        "too_many_rows",
        f"The file has more than {max_rows:,} rows; split it into smaller files.",
    )


def _where(line: int) -> str:
    """Where a line of the file is, in the rows the job reports (row 1 follows the header).

    Exact for the line; the row assumes no cell before it spans lines.
    """
    if line <= 1:
        return "in the header row (line 1 of the file)"
    return f"in row {line - 1:,} (line {line:,} of the file)"


_LINE_LIMIT = MAX_RECORD_BYTES + 3  # chars; more than this on one line is too long anyway


def _simple_block(text: str) -> bool:
    """Lines that are each one record, split on commas alone, none blank, none too long:
    ASCII, no quote, no line break but "\n" or "\r\n", no blank line (whitespace and commas
    only: the reader holds those back), and shorter than the record limit (so is every line).
    Each test is one pass in C over the block."""
    return (
        len(text) <= MAX_RECORD_BYTES
        and text.isascii()
        and '"' not in text
        and not _has_other_breaks(text)
        and _LONE_CR.search(text) is None
        and _BLANK_FIRST_LINE.match(text) is None
        and _BLANK_LATER_LINE.search(text) is None
    )


def _has_other_breaks(text: str) -> bool:
    """Does ``text`` hold a character str.splitlines() breaks at but the csv module does not?
    (One substring search each: much faster than a character-class regex.)"""
    breaks = _ASCII_OTHER_BREAKS if text.isascii() else _OTHER_BREAKS
    return any(char in text for char in breaks)


def _line_bytes(line: str) -> int:
    return len(line) if line.isascii() else len(line.encode("utf-8"))


def _terminator_length(line: str) -> int:
    if line.endswith("\r\n"):
        return 2
    return 1 if line.endswith(("\n", "\r")) else 0


class CsvReader:
    """A CSV object read once, front to back.

    ``header`` is the first record; iterating yields ``(row_number, cells)`` for every later
    record (blank ones too: ``cells == []``), numbered from 1. ``max_rows`` stops the read with
    ``too_many_rows`` as soon as it is exceeded; finishing with no rows raises ``no_rows``.
    """

    def __init__(self, body: BinaryIO | Any, *, max_rows: int) -> None:
        self.max_rows = max_rows
        buffered = io.BufferedReader(_ByteGuard(body), buffer_size=_READ_CHUNK)
        self._text = io.TextIOWrapper(buffered, encoding="utf-8", errors="strict", newline="")
        self._consumed = 0  # bytes of the lines handed out so far
        self._record_start = 0  # value of _consumed when the current record began
        # Whole simple blocks are handed out only to __iter__'s own loop (not to the header
        # read, nor to the csv module in the middle of a quoted record).
        self._blocks_wanted = False
        self._line_source = self._lines()
        # Records with a quote go through the csv module (fed from the same line source);
        # the rest, nearly every row, are split directly: the same result, several times faster.
        self._pushed_back: str | None = None
        self._ran_out = False
        self._quoted_records = csv.reader(self._quoted_lines())
        self.rows_read = 0
        self._in_header = True
        self.header: list[str] = self._next_record("The file is empty: it has no header row.")
        self._in_header = False
        if len(self.header) > MAX_COLUMNS:
            raise FileError(
                "too_many_columns",
                f"The header row has {len(self.header):,} columns; at most {MAX_COLUMNS:,} "
                "are allowed.",
            )

    def close(self) -> None:
        self._text.close()

    def __enter__(self) -> CsvReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- records -------------------------------------------------------------------------------

    def _quoted_lines(self) -> Iterator[str]:
        """The csv module's input: the line pushed back by the caller, then further lines."""
        source = self._line_source
        while True:
            if self._pushed_back is not None:
                line, self._pushed_back = self._pushed_back, None
                yield line
                continue
            # A record over several lines: no simple blocks while the csv module pulls.
            wanted, self._blocks_wanted = self._blocks_wanted, False
            line = next(source, None)
            self._blocks_wanted = wanted
            if line is None:
                self._ran_out = True
                return
            yield line

    def _parse_quoted(self, line: str) -> list[str]:
        self._pushed_back = line
        self._ran_out = False
        record = next(self._quoted_records, None)
        if self._ran_out:
            # The record wanted more lines than the file has: a quote that never closes. The
            # csv module would take the rest of the file as one cell and the rows would vanish.
            where = "The header row" if self._in_header else f"Row {self.rows_read + 1:,}"
            raise FileError(
                "not_csv",
                f'{where} opens a quoted cell (") that is never closed, so the rest of the file '
                "cannot be read as rows. Check the quotes in that row.",
            )
        return [] if record is None else record

    def _next_record(self, empty_message: str) -> list[str]:
        try:
            line = next(self._line_source, None)
            if line is None:
                raise FileError("no_rows", empty_message)
            if '"' in line:
                record = self._parse_quoted(line)
            else:
                body = line.rstrip("\r\n")
                record = body.split(",") if body else []
        except UnicodeDecodeError:
            raise self._not_utf8() from None
        except csv.Error as error:
            raise self._not_csv(error) from None
        self._record_start = self._consumed
        return record

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        return self._rows(count_only=False)  # type: ignore[return-value]

    def counted(self) -> Iterator[tuple[int, None]]:
        """Every check of iterating the rows, without their cells: ``(rows so far, None)``
        after each simple block of rows and after each other row. The scan pass reads so."""
        return self._rows(count_only=True)  # type: ignore[return-value]

    def _rows(self, *, count_only: bool) -> Iterator[tuple[int, list[str] | None]]:
        max_rows = self.max_rows
        parse_quoted = self._parse_quoted
        row_number = 0
        self._blocks_wanted = True
        try:
            for line in self._line_source:
                if line.__class__ is list:
                    # A simple block: each item is one record's text (no quote, no break).
                    if count_only:
                        row_number = self._count_block(line, row_number)
                        yield row_number, None
                        continue
                    for body in line:
                        cells = body.split(",")
                        row_number += 1
                        if len(cells) > MAX_COLUMNS:
                            self.rows_read = row_number - 1
                            raise _too_many_columns(row_number, len(cells))
                        if row_number > max_rows:
                            raise _too_many_rows(max_rows)
                        yield row_number, cells
                    self.rows_read = row_number
                    self._record_start = self._consumed
                    continue
                if '"' in line:
                    cells = parse_quoted(line)
                else:
                    body = line.rstrip("\r\n")
                    cells = body.split(",") if body else []
                self._record_start = self._consumed
                row_number += 1
                if len(cells) > MAX_COLUMNS:
                    raise _too_many_columns(row_number, len(cells))
                if row_number > max_rows:
                    raise _too_many_rows(max_rows)
                self.rows_read = row_number
                yield row_number, cells
        except UnicodeDecodeError:
            raise self._not_utf8() from None
        except csv.Error as error:
            raise self._not_csv(error) from None
        if row_number == 0:
            raise FileError("no_rows", "The file has a header row but no rows after it.")

    def _count_block(self, bodies: list[str], row_number: int) -> int:
        """The row loop's checks over a simple block, in bulk; returns the new row count."""
        wide = MAX_COLUMNS  # commas in a row of too many columns, at least
        first_wide = None
        if max(map(str.count, bodies, itertools.repeat(","))) >= wide:
            first_wide = next(i for i, body in enumerate(bodies) if body.count(",") >= wide)
        over = self.max_rows - row_number  # rows of this block that still fit
        if first_wide is not None and first_wide <= over:  # (columns are checked first)
            self.rows_read = row_number + first_wide
            raise _too_many_columns(row_number + first_wide + 1, bodies[first_wide].count(",") + 1)
        if len(bodies) > over:
            self.rows_read = self.max_rows
            raise _too_many_rows(self.max_rows)
        row_number += len(bodies)
        self.rows_read = row_number
        self._record_start = self._consumed
        return row_number

    def _not_utf8(self) -> FileError:
        return FileError(
            "not_utf8",
            f"The file is not UTF-8 text (bad bytes after row {self.rows_read:,}). Save it as "
            "'CSV UTF-8' and upload it again.",
        )

    def _not_csv(self, error: csv.Error) -> FileError:
        return FileError(
            "not_csv", f"The file could not be read as CSV after row {self.rows_read:,}: {error}."
        )

    # --- lines ---------------------------------------------------------------------------------

    def _lines(self) -> Iterator[Any]:
        """Lines for the csv parser, with the whole file's ends stripped; counts bytes.

        Yields lines (str) and, to ``__iter__`` (``_blocks_wanted``), lists of record texts
        from simple blocks (see ``_block_lines``).
        """
        limit = _LINE_LIMIT
        source = self._block_lines(limit)
        strip_set = _STRIP_SET
        held: str | None = None  # the last content line, not handed over yet
        # Blank lines seen after ``held``, as [line, repeat count] runs.
        blanks: list[list[Any]] = []

        for lines in source:
            if lines.__class__ is tuple:
                # A simple block (content lines only): ``held`` is not the end of the file.
                # (Only after the header: blocks are wanted by __iter__ alone.)
                records, last = lines
                assert held is not None
                self._consumed += len(held) if held.isascii() else len(held.encode("utf-8"))
                if self._consumed - self._record_start > MAX_RECORD_BYTES:
                    self._check_record(held)
                yield held
                if blanks:
                    for blank, count in blanks:
                        for _ in range(count):
                            self._consumed += _line_bytes(blank)
                            if self._consumed - self._record_start > MAX_RECORD_BYTES:
                                self._check_record(blank)
                            yield blank
                    blanks = []
                if self._blocks_wanted:
                    self._consumed += len(records)  # ASCII: characters are bytes
                    yield records.splitlines()
                else:
                    # The csv module is pulling lines for a quoted record: one at a time.
                    for record in records.splitlines(True):
                        self._consumed += len(record)
                        if self._consumed - self._record_start > MAX_RECORD_BYTES:
                            self._check_record(record)
                        yield record
                held = last
                continue
            for line in lines:
                if held is None:
                    # Leading whitespace and commas: skip blank lines (a blank line longer
                    # than the limit comes in pieces), then strip the first content line.
                    if line.lstrip(FILE_STRIP):
                        self._check_length(line, limit)
                        held = line.lstrip(FILE_STRIP)
                    continue
                # Too long: raised once the records before it are handed over, so that the
                # error names this line's row, not the one the parser is still on.
                too_long = len(line) >= limit and _terminator_length(line) == 0
                if not too_long and line[0] in strip_set and not line.strip(FILE_STRIP):
                    if blanks and blanks[-1][0] == line:
                        blanks[-1][1] += 1
                        continue
                    if len(blanks) < MAX_HELD_BLANK_SHAPES:
                        blanks.append([line, 1])
                        continue
                    # Pathological: stop holding back; these are read as blank rows.
                # ``held`` is not the end of the file: hand it over (inline: the hot path).
                self._consumed += len(held) if held.isascii() else len(held.encode("utf-8"))
                if self._consumed - self._record_start > MAX_RECORD_BYTES:
                    self._check_record(held)
                yield held
                if blanks:
                    for blank, count in blanks:
                        for _ in range(count):
                            self._consumed += _line_bytes(blank)
                            if self._consumed - self._record_start > MAX_RECORD_BYTES:
                                self._check_record(blank)
                            yield blank
                    blanks = []
                if too_long:
                    self._too_long()
                held = line

        if held is None:
            return
        # End of file: trailing blank lines vanish, the last content line loses its tail.
        last = held.rstrip(FILE_STRIP)
        if last:
            self._consumed += _line_bytes(last)
            self._check_record(last)
            yield last

    def _block_lines(self, limit: int) -> Iterator[Any]:
        """What successive ``readline(limit)`` calls return, a block of lines at a time.

        Decoded text is read in blocks and split in C; each block's complete lines come as a
        list, a line longer than ``limit`` in pieces of ``limit`` characters, as from
        ``readline(limit)``. While ``_blocks_wanted``, a simple block comes instead as a tuple
        ``(text, last line)``: the text of every complete line of the block but the last, and
        the last line (held back: it may be the end of the file).
        """
        read = self._text.read
        carry = ""
        while True:
            chunk = read(_TEXT_BLOCK)
            if not chunk:
                break
            text = carry + chunk if carry else chunk
            # Complete lines end at the last "\n", or at the last "\r" that is not the final
            # character (that one may be half of a "\r\n").
            cut = max(text.rfind("\n"), text.rfind("\r", 0, len(text) - 1)) + 1
            complete, carry = text[:cut], text[cut:]
            if complete:
                if self._blocks_wanted and _simple_block(complete):
                    # The last line starts after the break before it.
                    end = len(complete) - (2 if complete.endswith("\r\n") else 1)
                    start = max(complete.rfind("\n", 0, end), complete.rfind("\r", 0, end)) + 1
                    if start:
                        yield complete[:start], complete[start:]
                    else:
                        yield [complete]
                else:
                    if _has_other_breaks(complete):
                        lines = _LINE.findall(complete)
                    else:
                        lines = complete.splitlines(True)  # the same breaks as the csv module
                    if len(complete) > limit:
                        lines = [
                            line[at : at + limit]
                            for line in lines
                            for at in range(0, len(line), limit)
                        ]
                    yield lines
            pieces = []
            while len(carry) >= limit:  # no line break in sight: hand out a piece
                pieces.append(carry[:limit])
                carry = carry[limit:]
            if pieces:
                yield pieces
        if carry:
            yield [carry]

    def _check_length(self, line: str, limit: int) -> None:
        if len(line) >= limit and _terminator_length(line) == 0:
            self._too_long()

    def _check_record(self, line: str) -> None:
        # The record's own line break does not count.
        if self._consumed - _terminator_length(line) - self._record_start > MAX_RECORD_BYTES:
            self._too_long()

    def _too_long(self) -> None:
        where = "The header row" if self._in_header else f"Row {self.rows_read + 1:,}"
        raise FileError("line_too_long", f"{where} is longer than 1 MiB.")
