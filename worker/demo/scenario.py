"""The demo scenario: sample data, and every workflow run through a real worker.

Everything goes the way it goes in production: objects are uploaded the way the web app
uploads them (same keys, same metadata), tasks are enqueued by name through
``worker.client.NotifyClient``, and a ``notify-worker worker`` subprocess does the work.
"""

from __future__ import annotations

import io
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from celery.result import AsyncResult
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from storage import keys, objects
from storage.errors import NotifyError
from storage.settings import get_settings
from worker.client import NotifyClient

SERVICE_ID = "d6aa2c68-a2d9-4437-ab19-3ae8eb202553"
SMS_TEMPLATE_ID = "f33517ff-2a88-4f6e-b855-c550268ce08a"
EMAIL_TEMPLATE_ID = "a8f2c6a3-9e5b-4b53-8e2f-0d0b6f1c2e77"
CSV_ROWS = 5_000
CONTACT_LIST_ROWS = 400
BAD_ROW_EVERY = 37  # about 2.7% bad rows
FAKE_PDF = b"%PDF-1.4\n% notify-worker demo letter\n" + b"0" * 2048 + b"\n%%EOF\n"
TASK_TIMEOUT = 240


@dataclass
class DemoReport:
    rows: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, step: str, result: str) -> None:
        self.rows.append((step, result))


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _wait(result: AsyncResult, timeout: float = TASK_TIMEOUT) -> dict[str, Any]:
    value = result.get(timeout=timeout, propagate=False)
    if not isinstance(value, dict):
        return {"status": "failed", "error_code": "task_error", "error_message": repr(value)}
    return value


# --- sample data -------------------------------------------------------------------------------


def _phone(rng: random.Random, row: int) -> str:
    if row % BAD_ROW_EVERY == 0:
        return rng.choice(["12345", "", "+999 1234 5678", "07700 900 12a", "0770090012345"])
    digits = f"{rng.randrange(10**5):05d}"  # 07700 9xxxxx: Ofcom's drama range
    return rng.choice(
        [f"07700 9{digits[:2]} {digits[2:]}", f"+447700 9{digits}", f"(07700) 9{digits}"]
    )


def _email(rng: random.Random, row: int) -> str:
    if row % BAD_ROW_EVERY == 0:
        return rng.choice(["not-an-email", "", "someone@", "a..b@example.com"])
    return f"person.{row}@{rng.choice(['example.com', 'example.gov.uk', 'example.org'])}"


def upload_csv(
    purpose: str, upload_id: str, header: str, lines: list[str], *, template_id: str, file_name: str
) -> None:
    body = io.BytesIO(("\n".join([header, *lines]) + "\n").encode())
    objects.put_bytes(
        get_settings().bucket(purpose),
        keys.csv_upload_key(SERVICE_ID, upload_id),
        body,
        metadata={
            "original_file_name": file_name,
            "notification_count": str(len(lines)),
            "template_id": template_id,
            "valid": "True",
        },
        content_type="text/csv",
    )


def upload_letter(upload_id: str, *, valid: bool, index: int) -> None:
    metadata = {
        "status": "valid" if valid else "invalid",
        "page_count": "1",
        "filename": quote(f"demo letter {index}.pdf"),
        "recipient": quote(f"Demo Person {index}\n1 Demo Street\nSW1A 2AA"),
    }
    if not valid:
        metadata["message"] = "content-outside-printable-area"
        metadata["invalid_pages"] = "[1]"
    objects.put_bytes(
        get_settings().bucket("transient-letters"),
        keys.transient_letter_key(SERVICE_ID, upload_id),
        FAKE_PDF,
        metadata=metadata,
        content_type="application/pdf",
    )


def upload_logos() -> list[str]:
    bucket = get_settings().bucket("logo")
    made = []
    for name, letter, temporary in [
        ("temp-demo-logo.png", False, True),
        ("temp-demo-letter-logo.svg", True, True),
        ("demo-permanent-logo.png", False, False),
    ]:
        key = keys.logo_key(name, letter=letter)
        tags = {"delete-after-7-days": "true"} if temporary else None
        objects.put_bytes(bucket, key, b"\x89PNG demo", tags=tags, content_type="image/png")
        made.append(key)
    objects.put_bytes(get_settings().bucket("mou"), "crown.pdf", FAKE_PDF)
    return made


# --- the scenario ------------------------------------------------------------------------------


class Demo:
    def __init__(self, console: Console, *, seed: int = 2026) -> None:
        self.console = console
        self.client = NotifyClient()
        self.rng = random.Random(seed)
        self.report = DemoReport()
        self.sms_upload = str(uuid.uuid4())
        self.list_upload = str(uuid.uuid4())

    def step(self, title: str, action: Callable[[], None]) -> None:
        self.console.rule(f"[bold]{title}")
        started = time.monotonic()
        try:
            action()
        except NotifyError as error:
            self.report.problems.append(f"{title}: {error.message}")
            self.console.print(f"[red]{title} failed:[/] {error.message}")
        self.console.print(f"[dim]{title}: {time.monotonic() - started:.1f}s[/]")

    def run(self) -> DemoReport:
        self.step("Notification store", self.notification_store)
        self.step("Sample data", self.sample_data)
        self.step("CSV batches", self.csv_batches)
        self.step("Transient letters", self.letters)
        self.step("Report exports", self.reports)
        self.step("Cleanup", self.cleanup)
        return self.report

    # --- steps -----------------------------------------------------------------------------

    def notification_store(self) -> None:
        """PostgreSQL when NOTIFY_DATABASE_URL is set (its schema brought up to date first),
        else the Redis hash; the summary says which the rows went to."""
        from worker.runtime.database import get_database_settings

        settings = get_database_settings()
        if settings is None:
            self.store_name = "Redis hash notify:notifications:{upload_id}"
            self.console.print("rows go to the Redis hash (NOTIFY_DATABASE_URL is not set)")
        else:
            from tasks.csv_batches.store.schema import upgrade

            result = upgrade(settings)
            self.store_name = f"PostgreSQL table notifications at {settings.where}"
            self.console.print(
                f"rows go to PostgreSQL at {settings.where} (schema "
                f"{result.before or 'none'} -> {result.after})"
            )
        self.report.add("notification store", self.store_name)

    def sample_data(self) -> None:
        sms = [f"{_phone(self.rng, i)},Person {i}" for i in range(1, CSV_ROWS + 1)]
        upload_csv(
            "csv-upload",
            self.sms_upload,
            "phone number,name",
            sms,
            template_id=SMS_TEMPLATE_ID,
            file_name="demo-sms.csv",
        )
        emails = [f"{_email(self.rng, i)},Person {i}" for i in range(1, CONTACT_LIST_ROWS + 1)]
        upload_csv(
            "contact-list",
            self.list_upload,
            "email address,name",
            emails,
            template_id=EMAIL_TEMPLATE_ID,
            file_name="demo-contacts.csv",
        )
        self.letters_valid = [str(uuid.uuid4()) for _ in range(8)]
        self.letters_invalid = [str(uuid.uuid4()) for _ in range(2)]
        for index, upload_id in enumerate(self.letters_valid):
            upload_letter(upload_id, valid=True, index=index)
        for index, upload_id in enumerate(self.letters_invalid):
            upload_letter(upload_id, valid=False, index=index)
        logos = upload_logos()
        self.console.print(
            f"uploaded: SMS CSV ({CSV_ROWS:,} rows), email contact list "
            f"({CONTACT_LIST_ROWS} rows), {len(self.letters_valid)} valid and "
            f"{len(self.letters_invalid)} invalid letters, {len(logos)} logos, an MOU"
        )

    def _run_csv_job(
        self, progress: Progress, label: str, upload_id: str, rows: int, **job: Any
    ) -> dict[str, Any]:
        bar = progress.add_task(label, total=rows)
        result = self.client.process_csv(SERVICE_ID, upload_id, notification_count=rows, **job)
        deadline = time.monotonic() + TASK_TIMEOUT
        while time.monotonic() < deadline:
            state = self.client.job_progress(upload_id) or {}
            done = int(state.get("stored") or 0) + int(state.get("invalid") or 0)
            progress.update(bar, completed=min(done, rows))
            if result.ready() and done >= int(state.get("total") or rows):
                break
            time.sleep(0.2)
        return _wait(result)

    def csv_batches(self) -> None:
        with _progress(self.console) as progress:
            sms = self._run_csv_job(
                progress,
                "SMS job (rows stored)",
                self.sms_upload,
                CSV_ROWS,
                template_id=SMS_TEMPLATE_ID,
                template_type="sms",
                placeholders=["name"],
            )
            contacts = self._run_csv_job(
                progress,
                "contact list, email",
                self.list_upload,
                CONTACT_LIST_ROWS,
                template_id=EMAIL_TEMPLATE_ID,
                template_type="email",
                placeholders=["name"],
                source="contact-list",
            )
        for label, result in (("CSV job (sms)", sms), ("contact list job (email)", contacts)):
            if result.get("status") != "ok":
                self.report.problems.append(f"{label}: {result}")
            self.report.add(
                label,
                f"{result.get('status')}: {result.get('rows_dispatched', '?')} rows dispatched, "
                f"{result.get('rows_invalid', '?')} invalid of {result.get('rows_total', '?')}",
            )
        progress_state = self.client.job_progress(self.sms_upload) or {}
        self.console.print(f"SMS job progress (from Redis, no S3 call): {progress_state}")
        from tasks.csv_batches.store import notification_store

        store = notification_store()
        for label, upload_id, result in (
            ("SMS job", self.sms_upload, sms),
            ("contact list job", self.list_upload, contacts),
        ):
            stored = store.stored_count(upload_id)
            self.report.add(f"{label}: rows stored", f"{stored:,} in the {store.name} store")
            if stored != result.get("rows_dispatched"):
                self.report.problems.append(
                    f"{label}: {stored} rows stored, {result.get('rows_dispatched')} dispatched"
                )

    def letters(self) -> None:
        created_at = datetime.now(UTC).replace(microsecond=0)
        pending = []
        for index, upload_id in enumerate(self.letters_valid + self.letters_invalid):
            pending.append(
                self.client.move_transient_letter(
                    SERVICE_ID,
                    upload_id,
                    reference=f"DEMO{index:04d}",
                    postage=["first", "second", "economy", "europe", "rest-of-world"][index % 5],
                    created_at=created_at,
                    backup=index == 0,
                )
            )
        # A duplicate delivery of the first move: exactly once means it changes nothing.
        pending.append(
            self.client.move_transient_letter(
                SERVICE_ID,
                self.letters_valid[0],
                reference="DEMO0000",
                postage="first",
                created_at=created_at,
                backup=True,
            )
        )
        results = []
        with _progress(self.console) as progress:
            bar = progress.add_task("letters moved or skipped", total=len(pending))
            for result in pending:
                results.append(_wait(result))
                progress.advance(bar)
        by_status: dict[str, int] = {}
        for result in results:
            by_status[result["status"]] = by_status.get(result["status"], 0) + 1
        moved = len(list(objects_in("letters-pdf")))
        sweep = _wait(self.client.app.send_task("notify.letters.sweep_transient", queue="periodic"))
        self.report.add(
            "transient letters",
            f"{moved} moved, {by_status.get('skipped', 0)} skipped (invalid), "
            f"{by_status.get('failed', 0)} failed; {len(results)} deliveries incl. a duplicate",
        )
        self.report.add("letters sweep", f"{sweep.get('waiting', '?')} waiting past the alert age")
        if by_status.get("failed"):
            self.report.problems.append(f"letters: {results}")

    def reports(self) -> None:
        requests = [
            ("job-outcome", {"upload_id": self.sms_upload}),
            ("uploads", {}),
            ("storage-usage", {}),
            ("notifications", {"upload_id": self.sms_upload}),
        ]
        with _progress(self.console) as progress:
            for kind, params in requests:
                bar = progress.add_task(f"report {kind} (rows)", total=None)
                result = self.client.generate_report(str(uuid.uuid4()), SERVICE_ID, kind, params)
                while not result.ready():
                    meta = result.info if isinstance(result.info, dict) else {}
                    progress.update(bar, completed=int(meta.get("rows") or 0))
                    time.sleep(0.2)
                value = _wait(result)
                progress.update(bar, total=value.get("rows", 0), completed=value.get("rows", 0))
                if value.get("status") != "ok":
                    self.report.problems.append(f"report {kind}: {value}")
                self.report.add(
                    f"report {kind}",
                    f"{value.get('status')}: {value.get('rows', '?')} rows, "
                    f"{value.get('size_bytes', '?')} bytes at {value.get('key', '?')}",
                )

    def cleanup(self) -> None:
        later = datetime.now(UTC) + timedelta(days=8)
        dry = _wait(self.client.sweep_bucket("logo", dry_run=True, as_of=later))
        self.console.print(
            f"logo dry run: would delete {dry.get('matched')} of {dry.get('listed')}"
        )
        for purpose in ("logo", "transient-letters", "csv-upload", "mou"):
            value = _wait(self.client.sweep_bucket(purpose, dry_run=False, as_of=later))
            if value.get("status") == "failed":
                self.report.problems.append(f"cleanup {purpose}: {value}")
            detail = value.get("reason") or (
                f"{value.get('deleted', 0)} deleted, {value.get('kept', 0)} kept"
            )
            self.report.add(
                f"cleanup {purpose} (as of +8 days)", f"{value.get('status')}: {detail}"
            )
        left = [k for k in objects_in("logo")]
        self.console.print(f"logos left: {left} (permanent logos are never deleted)")


def objects_in(purpose: str) -> list[str]:
    from storage.listing import iter_objects

    return [o.key for o in iter_objects(get_settings().bucket(purpose))]
