"""Streaming CSV reading: bytes in, header and rows out, file-level errors as ``FileError``.

One object is read as a stream of lines (never the whole file): raw chunks are checked for NUL
bytes, decoded as UTF-8 incrementally and split into lines the way the ``csv`` module expects
(``newline=""``). A line without a quote character is one record and is split on commas (what
``csv.reader`` would return, faster); a record with quotes goes through ``csv.reader``, which
may pull more lines for quoted newlines. Memory holds one chunk, one record and a short
run-length summary of trailing blank lines, whatever the file's size.

The whole file has whitespace (obscure kinds included, which covers a byte-order mark) and
commas stripped from both ends, as the web app does (conformance README, "Whitespace"). The
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
import string
from collections.abc import Iterator
from typing import Any, BinaryIO

from tasks.csv_batches.columns import FileError
from tasks.csv_batches.recipients import OBSCURE_WHITESPACE

MAX_RECORD_BYTES = 1024 * 1024
MAX_COLUMNS = 1000
# Characters stripped from both ends of the whole file.
FILE_STRIP = string.whitespace + OBSCURE_WHITESPACE + ","
_STRIP_SET = frozenset(FILE_STRIP)
# Distinct trailing blank-line shapes held in memory before we give up holding them back (a file
# would need that many *different* blank lines in a row; they are then read as blank rows).
MAX_HELD_BLANK_SHAPES = 4096
_READ_CHUNK = 256 * 1024

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


def _where(line: int) -> str:
    """Where a line of the file is, in the rows the job reports (row 1 follows the header).

    Exact for the line; the row assumes no cell before it spans lines.
    """
    if line <= 1:
        return "in the header row (line 1 of the file)"
    return f"in row {line - 1:,} (line {line:,} of the file)"


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
            line = next(source, None)
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
        max_rows = self.max_rows
        parse_quoted = self._parse_quoted
        row_number = 0
        try:
            for line in self._line_source:
                if '"' in line:
                    cells = parse_quoted(line)
                else:
                    body = line.rstrip("\r\n")
                    cells = body.split(",") if body else []
                self._record_start = self._consumed
                row_number += 1
                if len(cells) > MAX_COLUMNS:
                    raise FileError(
                        "too_many_columns",
                        f"Row {row_number:,} has {len(cells):,} columns; at most "
                        f"{MAX_COLUMNS:,} are allowed.",
                    )
                if row_number > max_rows:
                    raise FileError(
                        "too_many_rows",
                        f"The file has more than {max_rows:,} rows; split it into smaller files.",
                    )
                self.rows_read = row_number
                yield row_number, cells
        except UnicodeDecodeError:
            raise self._not_utf8() from None
        except csv.Error as error:
            raise self._not_csv(error) from None
        if row_number == 0:
            raise FileError("no_rows", "The file has a header row but no rows after it.")

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

    def _lines(self) -> Iterator[str]:
        """Lines for the csv parser, with the whole file's ends stripped; counts bytes."""
        readline = self._text.readline
        limit = MAX_RECORD_BYTES + 3  # chars; more than this on one line is too long anyway
        strip_set = _STRIP_SET

        # Leading whitespace and commas: skip blank lines, then strip the first content line.
        line = readline(limit)
        while line and not line.lstrip(FILE_STRIP):
            line = readline(limit)  # (a blank line longer than the limit comes in pieces)
        if not line:
            return
        self._check_length(line, limit)
        held = line.lstrip(FILE_STRIP)
        # Blank lines seen after ``held``, as [line, repeat count] runs.
        blanks: list[list[Any]] = []

        while True:
            line = readline(limit)
            if not line:
                break
            # Too long: raised once the records before it are handed over, so that the error
            # names this line's row, not the one the parser is still on.
            too_long = len(line) >= limit and _terminator_length(line) == 0
            if not too_long and line[0] in strip_set and not line.strip(FILE_STRIP):
                if blanks and blanks[-1][0] == line:
                    blanks[-1][1] += 1
                    continue
                if len(blanks) < MAX_HELD_BLANK_SHAPES:
                    blanks.append([line, 1])
                    continue
                # Pathological: stop holding back; these are read as blank rows.
            # ``held`` is not the end of the file: hand it over (inline: this is the hot path).
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

        # End of file: trailing blank lines vanish, the last content line loses its tail.
        last = held.rstrip(FILE_STRIP)
        if last:
            self._consumed += _line_bytes(last)
            self._check_record(last)
            yield last

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
