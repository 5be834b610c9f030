"""The streaming CSV reader: ends stripped, rows counted, every file-level error it raises."""

from __future__ import annotations

import io

import pytest

from tasks.csv_batches.reader import MAX_COLUMNS, MAX_RECORD_BYTES, CsvReader
from tasks.csv_batches.validation.columns import FileError


class ChunkedBody(io.RawIOBase):
    """A body that hands out small chunks, like a network stream."""

    def __init__(self, data: bytes, chunk: int = 7) -> None:
        self._data = io.BytesIO(data)
        self._chunk = chunk

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        piece = self._data.read(min(len(buffer), self._chunk))
        buffer[: len(piece)] = piece
        return len(piece)


def read(data: bytes | str, *, max_rows: int = 100_000, chunk: int = 7):
    if isinstance(data, str):
        data = data.encode("utf-8")
    reader = CsvReader(ChunkedBody(data, chunk), max_rows=max_rows)
    return reader.header, list(reader)


def error_code(data: bytes | str, **kw) -> str:
    with pytest.raises(FileError) as caught:
        read(data, **kw)
    return caught.value.code


def test_rows_are_numbered_from_one_after_the_header():
    header, rows = read("phone number,name\n07700900123,Ann\n07700900124,Bob\n")
    assert header == ["phone number", "name"]
    assert rows == [(1, ["07700900123", "Ann"]), (2, ["07700900124", "Bob"])]


def test_blank_records_in_the_middle_count_as_rows():
    _, rows = read("phone number\r\nA\r\n\r\n  \r\nB\r\n")
    assert [n for n, _ in rows] == [1, 2, 3, 4]
    assert rows[1] == (2, []) and rows[2] == (3, ["  "])


def test_file_ends_are_stripped_of_whitespace_commas_and_bom():
    text = "\ufeff \n,,phone number,name\n0771,Ann\n0772,Bob,,,\n,,,\n\n \u00a0\n,,\n"
    header, rows = read(text)
    assert header == ["phone number", "name"]
    assert rows == [(1, ["0771", "Ann"]), (2, ["0772", "Bob"])]


def test_many_trailing_blank_lines_are_held_compactly_and_dropped():
    text = "email address\na@b.com\n" + ",,,,\n" * 200_000
    _, rows = read(text, chunk=65536)
    assert rows == [(1, ["a@b.com"])]


def test_quoted_fields_keep_newlines_and_commas():
    _, rows = read('a,b\n"x\n\ny",",z"\n')
    assert rows == [(1, ["x\n\ny", ",z"])]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_every_line_ending(newline):
    _, rows = read(newline.join(["h", "1", "2", "3"]))
    assert [cells for _, cells in rows] == [["1"], ["2"], ["3"]]


def test_utf8_multibyte_split_across_chunks():
    _, rows = read("name\nZoë Ångström\n", chunk=1)
    assert rows == [(1, ["Zoë Ångström"])]


def test_not_utf8():
    assert error_code(b"name\nZo\xeb\n") == "not_utf8"


def error_message(data: bytes | str, **kw) -> str:
    with pytest.raises(FileError) as caught:
        read(data, **kw)
    return caught.value.message


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_not_utf8_and_nul_name_the_line_of_the_file(newline):
    good = newline.join([b"name"] + [b"Ann"] * 5000) + newline
    # Far beyond the first chunk: the text layer decodes ahead, the byte guard knows the line.
    assert "in row 5,001 (line 5,002 of the file)" in error_message(
        good + b"Ren\xe9e" + newline, chunk=4096
    )
    assert "in row 5,001 (line 5,002" in error_message(good + b"Ren\x00e" + newline, chunk=4096)
    assert "in row 1 (line 2 of" in error_message(b"name" + newline + b"\xff", chunk=1)
    assert "header row" in error_message(b"na\xffme" + newline + b"x", chunk=1)
    # A multibyte character cut off by the end of the file.
    assert error_code(b"name" + newline + b"Zo\xc3") == "not_utf8"


def test_nul_bytes_are_not_csv():
    assert error_code(b"name\nab\x00c\n") == "not_csv"
    # A spreadsheet saved under a .csv name starts with a zip header full of NULs.
    assert error_code(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xff\xfe") == "not_csv"


def test_empty_and_header_only_files_have_no_rows():
    assert error_code("") == "no_rows"
    assert error_code(" \n,,\n\ufeff") == "no_rows"
    assert error_code("phone number\n") == "no_rows"
    assert error_code("phone number\n\n , \n") == "no_rows"


def test_too_many_rows_stops_at_the_limit():
    assert error_code("h\n" + "x\n" * 11, max_rows=10) == "too_many_rows"
    _, rows = read("h\n" + "x\n" * 10, max_rows=10)
    assert len(rows) == 10


def test_record_of_exactly_one_mib_is_fine_and_one_byte_more_is_too_long():
    cell = "a" * MAX_RECORD_BYTES
    _, rows = read(f"h\n{cell}\nb\n", chunk=65536)
    assert len(rows) == 2
    assert error_code(f"h\n{cell}a\nb\n", chunk=65536) == "line_too_long"
    # Multi-byte characters count in bytes.
    assert error_code("h\n" + "é" * (MAX_RECORD_BYTES // 2 + 1) + "\n", chunk=65536) == (
        "line_too_long"
    )


def test_record_too_long_across_quoted_lines():
    piece = "a" * (MAX_RECORD_BYTES // 4)
    quoted = '"' + "\n".join([piece] * 5) + '"'
    assert error_code(f"h\n{quoted}\n", chunk=65536) == "line_too_long"


def test_header_too_long():
    assert error_code("a" * (MAX_RECORD_BYTES + 10) + "\nx\n", chunk=65536) == "line_too_long"


def test_too_many_columns_in_header_or_row():
    assert error_code(",".join(["h"] * (MAX_COLUMNS + 1)) + "\nx\n") == "too_many_columns"
    _, rows = read(",".join(["h"] * MAX_COLUMNS) + "\nx\n")
    assert len(rows) == 1
    assert error_code("h\nx\n" + "y," * MAX_COLUMNS + "y\n") == "too_many_columns"


def test_fast_split_path_equals_the_csv_module_on_random_files():
    """Quote-free lines are split directly; everything must equal csv.reader on the same text."""
    import csv
    import random

    from tasks.csv_batches.reader import FILE_STRIP

    rng = random.Random(3)
    pieces = ["a", "b c", "", " ", ",", '"', '""', '"x,y"', '"multi\nline"', "é", "\t", "07700"]
    endings = ["\n", "\r\n", "\r"]
    for _ in range(300):
        lines = []
        for _ in range(rng.randrange(2, 12)):
            cells = [rng.choice(pieces) for _ in range(rng.randrange(0, 5))]
            lines.append(",".join(cells) + rng.choice(endings))
        text = "".join(lines)
        stripped = text.strip(FILE_STRIP)
        expected = list(csv.reader(io.StringIO(stripped, newline="")))
        if len(expected) < 2:
            continue
        if _ends_inside_quotes(stripped):
            # csv.reader would swallow the rest of the file into one cell; we refuse it.
            assert error_code(text) == "not_csv", repr(text)
            continue
        header, rows = read(text, chunk=rng.choice([1, 5, 64]))
        assert [header, *[cells for _, cells in rows]] == expected, repr(text)


def _ends_inside_quotes(text: str) -> bool:
    """The csv module's default dialect, reduced to: is a quoted field still open at the end?"""
    in_quotes, at_field_start = False, True
    i = 0
    while i < len(text):
        c = text[i]
        if in_quotes:
            if c == '"':
                if text[i + 1 : i + 2] == '"':
                    i += 1
                else:
                    in_quotes = False
        elif c == '"' and at_field_start:
            in_quotes = True
        at_field_start = not in_quotes and c in ",\r\n"
        i += 1
    return in_quotes


def test_an_unterminated_quote_is_not_csv_naming_its_row():
    message = error_message('h,name\n1,a\n2,"never closed\n3,c\n4,d\n')
    assert "Row 2 opens a quoted cell" in message
    assert error_code('h\n"never closed') == "not_csv"
    assert "header row" in error_message('"h\nx\n')
    # A quoted cell that closes on the last line, with or without a final newline, is fine.
    assert read('h\n"a\nb"')[1] == [(1, ["a\nb"])]
    assert read('h\n"a\nb"\n\n')[1] == [(1, ["a\nb"])]


@pytest.mark.parametrize("row", [1, 3])
def test_line_too_long_names_the_row_it_is_in(row):
    rows = ["x"] * (row - 1) + ["a" * (MAX_RECORD_BYTES + 10), "y"]
    message = error_message("h\n" + "\n".join(rows) + "\n", chunk=65536)
    assert message == f"Row {row} is longer than 1 MiB."


def test_a_long_blank_start_is_stripped_not_too_long():
    _, rows = read(" " * (MAX_RECORD_BYTES + 10) + "h\nx\n", chunk=65536)
    assert rows == [(1, ["x"])]
