"""The bad-input corpus: hostile and broken inputs for every workflow, generated in code.

Nothing large is committed: each case builds its bytes (a 1 MiB cell, 10,000 columns, …) when
asked. ``tests/integration/test_bad_inputs.py`` runs every case through a real worker and
checks the answer: a clear error (its code, and a message that says what is wrong and where),
nothing lost (the source object untouched) and nothing half-written (no partial output, no
multipart upload left, no row in the sink for a file-level error).

To look at the files themselves: ``python tests/data/bad_inputs/corpus.py OUT_DIR``.

A case's kwargs may use ``{service_id}``, ``{upload_id}``, ``{request_id}`` and
``{reference}``: the test fills in fresh ones for each run.
"""

from __future__ import annotations

import codecs
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CSV_TASK = "notify.csv.process_batch"
LETTER_TASK = "notify.letters.move_transient"
REPORT_TASK = "notify.reports.generate"
CLEANUP_TASK = "notify.cleanup.sweep"
CANCEL_TASK = "notify.csv.cancel"
RELEASE_DUE_TASK = "notify.csv.release_due"
SWEEP_LETTERS_TASK = "notify.letters.sweep_transient"
RECONCILE_TASK = "notify.jobs.reconcile"
SAVE_BATCH_TASK = "notify.notifications.save_batch"
REPLAY_ROWS_TASK = "notify.csv.replay_rows"

TEMPLATE_ID = "f6d9a4d2-8a1f-4c5e-9a85-0fd7c7b0c0a1"
SMS = {"id": TEMPLATE_ID, "type": "sms", "placeholders": ["name"]}
HEADER = b"phone number,name\r\n"
ROW = b"07700 900123,Alex\r\n"
WEB_APP_METADATA = {
    "original_file_name": "bad.csv",
    "notification_count": "1",
    "template_id": TEMPLATE_ID,
    "valid": "True",
}
LETTER_METADATA = {
    "status": "valid",
    "page_count": "1",
    "filename": "letter.pdf",
    "recipient": "Ms%20A",
    "message": "",
    "invalid_pages": "[]",
}


@dataclass(frozen=True)
class Case:
    """One hostile input and the answer it must get."""

    name: str
    task: str
    kwargs: dict[str, Any]
    expect_code: str | None  # None: the input is fine (a "looks bad, is fine" case)
    expect_in_message: tuple[str, ...] = ()  # what and where, case-insensitive
    body: Callable[[], bytes] | None = None  # the object to upload first (CSV or letter)
    metadata: dict[str, str] = field(default_factory=dict)
    expect_status: str = "failed"
    env: dict[str, str] = field(default_factory=dict)  # worker settings for this case
    expect_rows: int | None = None  # for fine CSVs: rows dispatched
    not_in_message: tuple[str, ...] = ()  # a wrong "where", say
    known_bug: str | None = None  # the workflow gets this wrong today (the test is an xfail)

    @property
    def workflow(self) -> str:
        return self.task.split(".")[1]


def csv_job(**overrides: Any) -> dict[str, Any]:
    kwargs = {"service_id": "{service_id}", "upload_id": "{upload_id}", "template": SMS}
    kwargs.update(overrides)
    return kwargs


def letter(**overrides: Any) -> dict[str, Any]:
    kwargs = {
        "service_id": "{service_id}",
        "upload_id": "{upload_id}",
        "reference": "{reference}",
        "postage": "second",
        "created_at": "2024-06-03T10:00:00Z",
    }
    kwargs.update(overrides)
    return kwargs


def report(**overrides: Any) -> dict[str, Any]:
    kwargs = {
        "report_request_id": "{request_id}",
        "service_id": "{service_id}",
        "kind": "uploads",
        "params": {},
    }
    kwargs.update(overrides)
    return kwargs


def const(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _csv(*lines: bytes) -> Callable[[], bytes]:
    return const(b"".join(lines))


def _many_columns() -> bytes:
    names = b",".join(b"col%d" % i for i in range(10_000))
    return b"phone number,name," + names + b"\r\n" + ROW


def _huge_cell() -> bytes:
    return HEADER + b"07700 900123," + b"x" * (1024 * 1024 + 10) + b"\r\n"


def _binary() -> bytes:
    return bytes(range(256)) * 64  # NULs and invalid UTF-8


def _png_like() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + bytes(range(128, 256)) * 8  # no NUL, not UTF-8


CSV_CASES = [
    Case("csv: empty file", CSV_TASK, csv_job(), "no_rows", ("empty",), _csv()),
    Case("csv: whitespace only", CSV_TASK, csv_job(), "no_rows", ("empty",), _csv(b" \r\n\t\n")),
    Case("csv: header only", CSV_TASK, csv_job(), "no_rows", ("header",), _csv(HEADER)),
    Case("csv: binary with NULs", CSV_TASK, csv_job(), "not_csv", ("NUL",), _binary),
    Case("csv: binary, no NULs", CSV_TASK, csv_job(), "not_utf8", ("UTF-8",), _png_like),
    Case(
        "csv: UTF-16 with BOM",
        CSV_TASK,
        csv_job(),
        "not_csv",
        ("NUL",),
        const(codecs.BOM_UTF16_LE + (HEADER + ROW).decode().encode("utf-16-le")),
    ),
    Case(
        "csv: Latin-1",
        CSV_TASK,
        csv_job(),
        "not_utf8",
        ("UTF-8", "row 1 "),
        _csv(HEADER, b"07700 900123,Ren\xe9e\r\n"),
    ),
    Case(
        "csv: Latin-1 says which row",
        CSV_TASK,
        csv_job(),
        "not_utf8",
        ("UTF-8", "row 5,000"),
        _csv(HEADER, ROW * 4999, b"07700 900123,Ren\xe9e\r\n", ROW),
    ),
    Case(
        "csv: UTF-8 BOM is fine",
        CSV_TASK,
        csv_job(),
        None,
        body=_csv(codecs.BOM_UTF8, HEADER, ROW),
        expect_status="ok",
        expect_rows=1,
    ),
    Case(
        "csv: mixed newlines are fine",
        CSV_TASK,
        csv_job(),
        None,
        body=_csv(b"phone number,name\n07700 900123,A\r\n07700 900124,B\r07700 900125,C\n"),
        expect_status="ok",
        expect_rows=3,
    ),
    Case(
        "csv: quoted newline in a cell is one row",
        CSV_TASK,
        csv_job(),
        None,
        body=_csv(HEADER, b'07700 900123,"line one\r\nline two"\r\n', ROW),
        expect_status="ok",
        expect_rows=2,
    ),
    Case(
        "csv: unterminated quote",
        CSV_TASK,
        csv_job(),
        "not_csv",
        ("row 1",),
        _csv(HEADER, b'07700 900123,"never closed\r\n', ROW * 3),
    ),
    Case(
        "csv: a 1 MiB cell",
        CSV_TASK,
        csv_job(),
        "line_too_long",
        ("1 MiB", "row 1 is"),
        _huge_cell,
        not_in_message=("header",),
    ),
    Case(
        "csv: a 1 MiB cell in row 3",
        CSV_TASK,
        csv_job(),
        "line_too_long",
        ("1 MiB", "row 3 is"),
        lambda: HEADER + ROW * 2 + _huge_cell()[len(HEADER) :],
    ),
    Case(
        "csv: a 1 MiB header",
        CSV_TASK,
        csv_job(),
        "line_too_long",
        ("1 MiB", "header row"),
        lambda: b"phone number,name," + b"h" * (1024 * 1024 + 10) + b"\r\n" + ROW,
    ),
    Case(
        "csv: 1,001 cells in a data row",
        CSV_TASK,
        csv_job(),
        "too_many_columns",
        ("row 1 ", "1,000"),
        lambda: HEADER + b"07700 900123,A" + b",x" * 1000 + b"\r\n",
    ),
    Case(
        "csv: a blank row in the middle fails as missing, the rest go",
        CSV_TASK,
        csv_job(),
        None,
        body=_csv(HEADER, ROW, b"\r\n", ROW),
        expect_status="ok",
        expect_rows=2,
    ),
    Case(
        "csv: header of commas only",
        CSV_TASK,
        csv_job(),
        "missing_recipient_column",
        ("phone number",),
        _csv(b",,,\r\n", ROW),
    ),
    Case(
        "csv: NUL byte in a cell",
        CSV_TASK,
        csv_job(),
        "not_csv",
        ("NUL", "row 2 "),
        _csv(HEADER, ROW, b"07700 900123,Al\x00ex\r\n"),
    ),
    Case(
        "csv: 10,000 columns",
        CSV_TASK,
        csv_job(),
        "too_many_columns",
        ("1,000",),
        _many_columns,
    ),
    Case(
        "csv: duplicate recipient column",
        CSV_TASK,
        csv_job(),
        "duplicate_recipient_column",
        ("phone number",),
        _csv(b"phone number,Phone_Number,name\r\n07700 900123,07700 900124,A\r\n"),
    ),
    Case(
        "csv: no recipient column",
        CSV_TASK,
        csv_job(),
        "missing_recipient_column",
        ("phone number",),
        _csv(b"mobile,name\r\n07700 900123,A\r\n"),
    ),
    Case(
        "csv: missing placeholder column",
        CSV_TASK,
        csv_job(),
        "missing_placeholder_column",
        ("name",),
        _csv(b"phone number\r\n07700 900123\r\n"),
    ),
    Case(
        "csv: formula cells are just text",
        CSV_TASK,
        csv_job(),
        None,
        body=_csv(HEADER, b'07700 900123,"=HYPERLINK(""http://x"",""y"")"\r\n'),
        expect_status="ok",
        expect_rows=1,
    ),
    Case(
        "csv: too many rows",
        CSV_TASK,
        csv_job(),
        "too_many_rows",
        ("5",),
        _csv(HEADER, ROW * 6),
        env={"NOTIFY_CSV_MAX_ROWS": "5"},
    ),
    Case(
        "csv: garbled web-app metadata is recorded, not trusted",
        CSV_TASK,
        csv_job(),
        None,
        body=_csv(HEADER, ROW),
        metadata={"notification_count": "lots", "valid": "maybe", "template_id": "../x"},
        expect_status="ok",
        expect_rows=1,
    ),
    Case("csv: no such file", CSV_TASK, csv_job(), "file_not_found", ("{upload_id}",)),
    Case(
        "csv: no such contact list",
        CSV_TASK,
        csv_job(source="contact-list"),
        "file_not_found",
        ("{upload_id}", "contact-list"),
    ),
    Case(
        "csv: service id not a UUID",
        CSV_TASK,
        csv_job(service_id="service-1"),
        "invalid_id",
        ("service_id", "service-1"),
    ),
    Case(
        "csv: upload id with ../",
        CSV_TASK,
        csv_job(upload_id="../../etc/passwd"),
        "invalid_id",
        ("upload_id",),
    ),
    Case(
        "csv: unknown template type",
        CSV_TASK,
        csv_job(template={**SMS, "type": "fax"}),
        "invalid_template",
        ("type",),
    ),
    Case(
        "csv: template not an object",
        CSV_TASK,
        csv_job(template="sms"),
        "invalid_template",
        ("template",),
    ),
    Case(
        "csv: unknown source bucket",
        CSV_TASK,
        csv_job(source="logo"),
        "invalid_source",
        ("source",),
    ),
    Case(
        "csv: option not a boolean",
        CSV_TASK,
        csv_job(options={"allow_international_sms": "yes"}),
        "invalid_options",
        ("true or false",),
    ),
    Case(
        "csv: scheduled_for not a timestamp",
        CSV_TASK,
        csv_job(scheduled_for="tomorrow"),
        "invalid_timestamp",
        ("scheduled_for", "tomorrow"),
        _csv(HEADER, ROW),
    ),
    Case(
        "csv: scheduled more than 7 days ahead",
        CSV_TASK,
        csv_job(scheduled_for="2099-01-01T00:00:00Z"),
        "invalid_scheduled_for",
        ("7 days",),
        _csv(HEADER, ROW),
    ),
]

NOT_A_PDF = b"Hello, I am a text file pretending to be a PDF."

LETTER_CASES = [
    Case(
        "letter: a 'PDF' that is not one, validated by the web app, is moved as it is",
        LETTER_TASK,
        letter(),
        None,
        body=const(NOT_A_PDF),
        metadata=LETTER_METADATA,
        expect_status="ok",
    ),
    Case(
        "letter: status=invalid is left where it is",
        LETTER_TASK,
        letter(),
        None,
        body=const(NOT_A_PDF),
        metadata={**LETTER_METADATA, "status": "invalid"},
        expect_status="skipped",
    ),
    Case(
        "letter: no metadata at all",
        LETTER_TASK,
        letter(),
        "letter_not_validated",
        ("status",),
        body=const(b"%PDF-1.7\n"),
    ),
    Case(
        "letter: garbled status",
        LETTER_TASK,
        letter(),
        "letter_not_validated",
        ("status",),
        body=const(b"%PDF-1.7\n"),
        metadata={**LETTER_METADATA, "status": "probably-fine"},
    ),
    # The letter's ids and keys are in the result itself (move.result): the "where".
    Case("letter: no such letter", LETTER_TASK, letter(), "letter_not_found", ("not found",)),
    Case(
        "letter: reference with ../",
        LETTER_TASK,
        letter(reference="../ETC"),
        "invalid_reference",
        ("reference",),
    ),
    Case(
        "letter: reference too long",
        LETTER_TASK,
        letter(reference="A" * 33),
        "invalid_reference",
        ("reference",),
    ),
    Case(
        "letter: unknown postage",
        LETTER_TASK,
        letter(postage="carrier-pigeon"),
        "invalid_postage",
        ("postage", "carrier-pigeon"),
    ),
    Case(
        "letter: created_at not a timestamp",
        LETTER_TASK,
        letter(created_at="31/12/2024"),
        "invalid_timestamp",
        ("created_at",),
    ),
    Case(
        "letter: upload id not a UUID",
        LETTER_TASK,
        letter(upload_id="letter-1.pdf"),
        "invalid_id",
        ("upload_id",),
    ),
    Case(
        "letter: service id with ../",
        LETTER_TASK,
        letter(service_id="../service"),
        "invalid_id",
        ("service_id",),
    ),
    Case(
        "letter: backup not a boolean",
        LETTER_TASK,
        letter(backup="yes"),
        "invalid_backup",
        ("backup",),
    ),
    Case(
        "letter: unknown argument",
        LETTER_TASK,
        letter(recipient="Ms A"),
        "unknown_argument",
        ("recipient",),
    ),
]

REPORT_CASES = [
    Case("report: unknown kind", REPORT_TASK, report(kind="secrets"), "unknown_kind", ("secrets",)),
    Case(
        "report: kind with ../",
        REPORT_TASK,
        report(kind="../../uploads"),
        "unknown_kind",
        ("kind",),
    ),
    Case(
        "report: request id not a UUID",
        REPORT_TASK,
        report(report_request_id="report.csv"),
        "invalid_id",
        ("report_request_id",),
    ),
    Case(
        "report: params not an object",
        REPORT_TASK,
        report(params=["from"]),
        "invalid_params",
        ("params",),
    ),
    Case(
        "report: unknown param",
        REPORT_TASK,
        report(params={"limit": 5}),
        "invalid_params",
        ("limit",),
    ),
    Case(
        "report: from is not a timestamp",
        REPORT_TASK,
        report(params={"from": "last week"}),
        "invalid_params",
        ("from", "last week"),
    ),
    Case(
        "report: from after to",
        REPORT_TASK,
        report(params={"from": "2024-02-01", "to": "2024-01-01"}),
        "invalid_params",
        ("from", "to"),
    ),
    Case(
        "report: job-outcome without an upload id",
        REPORT_TASK,
        report(kind="job-outcome"),
        "invalid_params",
        ("upload_id",),
    ),
    Case(
        "report: job-outcome of an upload id with ../",
        REPORT_TASK,
        report(kind="job-outcome", params={"upload_id": "../x"}),
        "invalid_params",
        ("upload_id", "../x"),
    ),
    Case(
        "report: job-outcome of a job that does not exist",
        REPORT_TASK,
        report(kind="job-outcome", params={"upload_id": "{upload_id}"}),
        "job_not_found",
        ("{upload_id}",),
    ),
]

CLEANUP_CASES = [
    Case(
        "cleanup: unknown purpose",
        CLEANUP_TASK,
        {"bucket": "secrets", "dry_run": False},
        "unknown_bucket",
        ("secrets",),
    ),
    Case(
        "cleanup: reference-only bucket without a reference check is not swept",
        CLEANUP_TASK,
        {"bucket": "email-attachments", "dry_run": False},
        None,
        expect_status="skipped",
    ),
    *[
        Case(
            f"cleanup: protected {purpose} is never swept",
            CLEANUP_TASK,
            {"bucket": purpose, "dry_run": False},
            None,
            expect_status="skipped",
        )
        for purpose in ("mou", "letter-backups", "letters-pdf")
    ],
    Case(
        "cleanup: dry_run as a string",
        CLEANUP_TASK,
        {"bucket": "transient-letters", "dry_run": "false"},
        "invalid_dry_run",
        ("dry_run",),
    ),
    Case(
        "cleanup: max_deletions of zero",
        CLEANUP_TASK,
        {"bucket": "transient-letters", "dry_run": False, "max_deletions": 0},
        "invalid_max_deletions",
        ("max_deletions",),
    ),
    Case(
        "cleanup: as_of not a timestamp",
        CLEANUP_TASK,
        {"bucket": "transient-letters", "dry_run": False, "as_of": "yesterday"},
        "invalid_timestamp",
        ("as_of", "yesterday"),
    ),
]


def _unknown(task: str, kwargs: dict[str, Any], code: str = "invalid_input") -> Case:
    return Case(
        f"{task}: unknown argument",
        task,
        {**kwargs, "colour": "red"},
        code,
        ("unknown argument", "colour"),
        not_in_message=("red",),  # names the argument, never echoes its value
    )


def _missing(task: str, kwargs: dict[str, Any], name: str) -> Case:
    return Case(
        f"{task}: missing {name}",
        task,
        {k: v for k, v in kwargs.items() if k != name},
        "invalid_input",
        ("missing argument", name),
    )


# Every task refuses arguments it does not take, or lacks, as bad input: never a TypeError
# recorded as an internal error in the dead letters.
CANCEL = {"service_id": "{service_id}", "upload_id": "{upload_id}"}
REPLAY = {**CANCEL, "first_row": 1, "last_row": 10}
ARGUMENT_CASES = [
    _unknown(CSV_TASK, csv_job()),
    _missing(CSV_TASK, csv_job(), "template"),
    _missing(CSV_TASK, csv_job(), "upload_id"),
    _unknown(CANCEL_TASK, CANCEL),
    _missing(CANCEL_TASK, CANCEL, "upload_id"),
    _unknown(RELEASE_DUE_TASK, {}),
    _unknown(REPLAY_ROWS_TASK, REPLAY),
    _missing(REPLAY_ROWS_TASK, REPLAY, "last_row"),
    _unknown(LETTER_TASK, letter(), code="unknown_argument"),
    _unknown(SWEEP_LETTERS_TASK, {}, code="unknown_argument"),
    _unknown(REPORT_TASK, report()),
    _missing(REPORT_TASK, report(), "kind"),
    _unknown(CLEANUP_TASK, {"bucket": "transient-letters"}),
    _missing(CLEANUP_TASK, {"bucket": "transient-letters"}, "bucket"),
    _unknown(RECONCILE_TASK, {}),
    _unknown(SAVE_BATCH_TASK, {"batch": {}}),
    _missing(SAVE_BATCH_TASK, {"batch": {}}, "batch"),
]

CASES: list[Case] = [
    *CSV_CASES,
    *LETTER_CASES,
    *REPORT_CASES,
    *CLEANUP_CASES,
    *ARGUMENT_CASES,
]


def write_files(directory: Path) -> list[Path]:
    """Write every case that has a body to ``directory`` (for a look by hand)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for number, case in enumerate(CASES, 1):
        if case.body is None:
            continue
        suffix = ".pdf" if case.task == LETTER_TASK else ".csv"
        path = directory / f"{number:02d}-{case.workflow}{suffix}"
        path.write_bytes(case.body())
        written.append(path)
    return written


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bad_inputs_out")
    for path in write_files(out):
        print(path)
