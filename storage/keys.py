"""Key builders and parsers for every layout in docs/storage.md.

Every id that goes into a key is checked to be a UUID first (and every other part against a
strict pattern), so no caller can escape a prefix with ``../`` or smuggle a slash into a key.
Builders raise ``InvalidInput`` before any S3 call is made.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from storage.errors import InvalidInput

# A UUID in canonical hyphenated form (either case): the one pattern every id check uses.
UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_UUID_RE = re.compile(UUID_PATTERN)
_REFERENCE_RE = re.compile(r"[A-Z0-9]{1,32}")
_KIND_RE = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_LOGO_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")

LONDON = ZoneInfo("Europe/London")
LETTER_CUTOFF = time(17, 30, 0)
POSTAGE_CLASSES = {
    "first": "1",
    "second": "2",
    "economy": "ECONOMY",
    "europe": "E",
    "rest-of-world": "N",
}
LETTER_LOGO_PREFIX = "letters/static/images/letter-template/"


def require_uuid(value: object, what: str = "id") -> str:
    """Return ``value`` if it is a UUID in canonical hyphenated form, else refuse it."""
    if not isinstance(value, str) or not _UUID_RE.fullmatch(value):
        shown = value if isinstance(value, str) and len(value) <= 64 else type(value).__name__
        raise InvalidInput(f"{what} must be a UUID, got {shown!r}.", code="invalid_id")
    return value


def require_reference(value: object) -> str:
    if not isinstance(value, str) or not _REFERENCE_RE.fullmatch(value):
        raise InvalidInput(
            "reference must be 1-32 characters of A-Z and 0-9.", code="invalid_reference"
        )
    return value


def require_kind(value: object) -> str:
    """The shape of a report kind (registration is checked by the reports workflow)."""
    if not isinstance(value, str) or len(value) > 64 or not _KIND_RE.fullmatch(value):
        raise InvalidInput(
            "report kind must be lower-case words joined by '-', e.g. 'job-outcome'.",
            code="unknown_kind",
        )
    return value


def parse_timestamp(value: object, what: str = "timestamp") -> datetime:
    """ISO 8601 to an aware datetime; no timezone means UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(
                f"{what} must be an ISO 8601 timestamp, got {value!r}.", code="invalid_timestamp"
            ) from None
    else:
        raise InvalidInput(f"{what} must be an ISO 8601 timestamp.", code="invalid_timestamp")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def isoformat(moment: datetime) -> str:
    """UTC, second precision, trailing Z: the form this project writes."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --- CSV uploads and contact lists -------------------------------------------------------------

_CSV_KEY_RE = re.compile(rf"service-({UUID_PATTERN})-notify/({UUID_PATTERN})\.csv")


class ServiceObject(NamedTuple):
    service_id: str
    object_id: str


def csv_upload_key(service_id: str, upload_id: str) -> str:
    """Key of a CSV upload or a contact list (same layout in both buckets)."""
    require_uuid(service_id, "service_id")
    require_uuid(upload_id, "upload_id")
    return f"service-{service_id}-notify/{upload_id}.csv"


def parse_csv_upload_key(key: str) -> ServiceObject | None:
    m = _CSV_KEY_RE.fullmatch(key)
    return ServiceObject(m.group(1), m.group(2)) if m else None


def csv_upload_prefix(service_id: str) -> str:
    require_uuid(service_id, "service_id")
    return f"service-{service_id}-notify/"


# --- transient letters, attachments, backups ----------------------------------------------------

_SERVICE_PDF_RE = re.compile(rf"service-({UUID_PATTERN})/({UUID_PATTERN})\.pdf")


def transient_letter_key(service_id: str, upload_id: str) -> str:
    require_uuid(service_id, "service_id")
    require_uuid(upload_id, "upload_id")
    return f"service-{service_id}/{upload_id}.pdf"


def _parse_service_pdf(key: str) -> ServiceObject | None:
    m = _SERVICE_PDF_RE.fullmatch(key)
    return ServiceObject(m.group(1), m.group(2)) if m else None


# Letter attachments share the transient letters' layout.
parse_transient_letter_key = _parse_service_pdf
parse_letter_attachment_key = _parse_service_pdf
letter_attachment_key = transient_letter_key


def letter_backup_key(upload_id: str) -> str:
    require_uuid(upload_id, "upload_id")
    return f"{upload_id}.pdf"


def email_attachment_key(service_id: str, file_id: str) -> str:
    require_uuid(service_id, "service_id")
    require_uuid(file_id, "template_email_file_id")
    return f"{service_id}/{file_id}"


_EMAIL_FILE_RE = re.compile(rf"({UUID_PATTERN})/({UUID_PATTERN})")


def parse_email_attachment_key(key: str) -> ServiceObject | None:
    m = _EMAIL_FILE_RE.fullmatch(key)
    return ServiceObject(m.group(1), m.group(2)) if m else None


# --- reports -----------------------------------------------------------------------------------

_REPORT_KEY_RE = re.compile(rf"([a-z][a-z0-9-]*)_report/({UUID_PATTERN})\.csv")


def report_key(kind: str, report_request_id: str) -> str:
    require_kind(kind)
    require_uuid(report_request_id, "report_request_id")
    return f"{kind}_report/{report_request_id}.csv"


def parse_report_key(key: str) -> tuple[str, str] | None:
    m = _REPORT_KEY_RE.fullmatch(key)
    return (m.group(1), m.group(2)) if m else None


# --- logos ---------------------------------------------------------------------------------------


def logo_key(filename: str, *, letter: bool = False) -> str:
    if not isinstance(filename, str) or not _LOGO_NAME_RE.fullmatch(filename) or ".." in filename:
        raise InvalidInput("logo filename must be a plain file name.", code="invalid_filename")
    return f"{LETTER_LOGO_PREFIX}{filename}" if letter else filename


def is_temporary_logo(key: str) -> bool:
    """Temporary logos have a file name (last path segment) starting ``temp-``."""
    return key.rsplit("/", 1)[-1].startswith("temp-")


# --- letters PDF (the printing naming rule) -----------------------------------------------------


def letter_print_day(created_at: datetime) -> date:
    """London date of ``created_at``, moved to the next day strictly after 17:30:00.

    A naive ``created_at`` is UTC (as everywhere in this project), never the machine's zone.
    """
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    london = created_at.astimezone(LONDON)
    day = london.date()
    if london.time().replace(tzinfo=None) > LETTER_CUTOFF:
        day += timedelta(days=1)
    return day


def letters_pdf_key(reference: str, postage: str, created_at: datetime | str) -> str:
    """``{YYYY-MM-DD}/NOTIFY.{REFERENCE}.D.{CLASS}.C.{YYYYMMDDHHMMSS}.PDF``, all upper case."""
    require_reference(reference)
    try:
        klass = POSTAGE_CLASSES[postage]
    except (KeyError, TypeError):
        raise InvalidInput(
            f"postage must be one of {', '.join(POSTAGE_CLASSES)}, got {postage!r}.",
            code="invalid_postage",
        ) from None
    moment = parse_timestamp(created_at, "created_at")
    folder = letter_print_day(moment).isoformat()
    stamp = moment.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    return f"{folder}/NOTIFY.{reference}.D.{klass}.C.{stamp}.PDF".upper()
