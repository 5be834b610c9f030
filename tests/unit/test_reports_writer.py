"""The streaming CSV writer on in-process moto: content, formulas, parts, aborts, no replace."""

from __future__ import annotations

import csv
import io
import random
import time
from itertools import pairwise

import pytest

from storage.errors import S3PreconditionFailed
from storage.objects import get_tags, head, put_bytes
from tasks.reports.writer import BadSourceRow, _encode_batch, safe_cell, write_csv
from tests.reports_fixtures import (
    PART_SIZE,
    count_s3_calls,
    object_keys,
    pending_uploads,
    read_report,
    report_bucket,
)

HEADER = ("n", "name", "note")


def rows(count: int) -> list[tuple]:
    return [(n, f"name-{n}", "x" * 40) for n in range(1, count + 1)]


def write(key: str, data, **kw):
    options = {"part_size": PART_SIZE, "metadata": {"kind": "t"}, "tags": {"a": "1"}}
    options.update(kw)
    return write_csv(report_bucket(), key, HEADER, data, **options)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+447700900123", "'+447700900123"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        (-5, "'-5"),
        ("447700900123", "447700900123"),  # a normalised phone number stays as it is
        ("a=b", "a=b"),
        (" =1", " =1"),
        ("", ""),
        (None, ""),
        (12, "12"),
        (1.5, "1.5"),
        (True, "True"),
    ],
)
def test_safe_cell(value, expected):
    assert safe_cell(value) == expected


def test_small_report_is_one_put_with_metadata_tags_and_encryption(mock_s3):
    written = write("small_report/a.csv", rows(3), part_size=1024 * 1024)
    assert (written.rows, written.parts) == (3, 0)
    assert read_report("small_report/a.csv") == [
        list(HEADER),
        *[[str(n), f"name-{n}", "x" * 40] for n in (1, 2, 3)],
    ]
    info = head(report_bucket(), "small_report/a.csv")
    assert info.server_side_encryption == "AES256"
    assert info.metadata == {"kind": "t"}
    assert info.content_type == "text/csv; charset=utf-8"
    assert info.size == written.size_bytes
    assert get_tags(report_bucket(), "small_report/a.csv") == {"a": "1"}


def test_big_report_goes_in_parts_and_matches_csv_writer_output(mock_s3):
    data = rows(2_000)
    written = write("big_report/a.csv", iter(data))
    assert written.parts > 10
    expected = io.StringIO()
    csv.writer(expected).writerows([HEADER, *data])
    assert written.size_bytes == len(expected.getvalue().encode())
    assert read_report("big_report/a.csv") == [list(HEADER), *[[str(a), b, c] for a, b, c in data]]
    assert get_tags(report_bucket(), "big_report/a.csv") == {"a": "1"}
    assert head(report_bucket(), "big_report/a.csv").server_side_encryption == "AES256"


def test_cells_are_neutralised_in_every_column_and_the_header(mock_s3):
    bucket = report_bucket()
    write_csv(
        bucket,
        "f_report/a.csv",
        ["=h", "ok"],
        [["=1", "@x"], ["+1", "-1"], ["\t1", "\r1"]],
        part_size=PART_SIZE,
        metadata={},
        tags={},
    )
    assert read_report("f_report/a.csv") == [
        ["'=h", "ok"],
        ["'=1", "'@x"],
        ["'+1", "'-1"],
        ["'\t1", "'\r1"],
    ]


def test_progress_is_reported_about_every_n_rows_and_at_the_end(mock_s3):
    seen: list[int] = []
    write("p_report/a.csv", rows(1_000), progress=seen.append, progress_every=100)
    assert seen[-1] == 1_000
    assert seen == sorted(set(seen))
    assert all(b - a >= 100 for a, b in pairwise(seen[:-1]))
    assert 5 <= len(seen) <= 10


CELLS = ["", "a", "=1", "+4", "-", "@", "\t", "\r", "\n", ",", '"', "'", " =", "a,=b", "x\n=y"]


def reference(batch: list[list]) -> str:
    """The obvious encoding: every cell through safe_cell, then csv."""
    out = io.StringIO()
    csv.writer(out).writerows([[safe_cell(c) for c in row] for row in batch])
    return out.getvalue()


def test_the_fast_batch_path_gives_the_same_bytes_as_cell_by_cell(monkeypatch):
    from tasks.reports import writer

    fast = []
    plain_text = writer._plain_text
    monkeypatch.setattr(writer, "_plain_text", lambda *a: fast.append(plain_text(*a)) or fast[-1])
    rng = random.Random(5)
    for n in range(4_000):
        # Every other batch avoids the cells that force the careful path, to test the fast one.
        cells = CELLS if n % 2 else [c for c in CELLS if c not in ("\r", "\n", ",", '"')]
        kinds = [None, -3, 7, 2.5, True] if n % 2 else [-3, 7, 2.5]
        width = rng.randint(1, 4)
        batch = [
            [
                rng.choice([*kinds, *["".join(rng.choices(cells, k=rng.randint(0, 3)))] * 4])
                for _ in range(width)
            ]
            for _ in range(rng.randint(1, 5))
        ]
        assert _encode_batch(batch, width, 1) == reference(batch), batch
    assert sum(text is not None for text in fast) > 500  # the fast path was really taken


def test_a_source_failing_half_way_leaves_nothing(mock_s3):
    calls = count_s3_calls(mock_s3)

    def broken():
        yield from rows(500)
        deadline = time.monotonic() + 10
        while calls.count("UploadPart") < 5 and time.monotonic() < deadline:
            time.sleep(0.01)  # let the upload thread send a few parts first
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write("broken_report/a.csv", broken())
    assert calls.count("UploadPart") > 5
    assert calls[-1] == "AbortMultipartUpload"
    assert object_keys() == []
    assert pending_uploads() == []


def test_a_row_that_does_not_fit_the_header_is_refused_and_nothing_is_left(mock_s3):
    with pytest.raises(BadSourceRow):
        write("ragged_report/a.csv", [*rows(500), (1, "short")])
    assert object_keys() == []
    assert pending_uploads() == []


@pytest.mark.parametrize("count", [3, 500], ids=["single-put", "multipart"])
def test_an_existing_object_is_never_replaced(mock_s3, count):
    bucket = report_bucket()
    put_bytes(bucket, "x_report/a.csv", b"first")
    with pytest.raises(S3PreconditionFailed):
        write("x_report/a.csv", rows(count))
    assert read_report("x_report/a.csv") == [["first"]]
    assert pending_uploads() == []
