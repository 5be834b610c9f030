"""Argument checks, made before anything is sent: a mistake fails in the web app's request,
naming the argument, instead of in a worker later."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from notify_worker_client import names

_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_REFERENCE_RE = re.compile(r"[A-Z0-9]{1,32}")
_KIND_RE = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_QUEUE_PREFIX_RE = re.compile(r"[A-Za-z0-9._-]{0,64}")
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")

MAX_SCHEDULE_AHEAD = timedelta(days=7)
# The workers allow five minutes of clock difference on top; the client does not need to.


class InvalidArgument(ValueError):
    """An argument the workers would refuse. ``argument`` names it."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument = argument
        self.message = message


def _shown(value: object) -> str:
    if isinstance(value, str) and len(value) <= 64:
        return repr(value)
    return type(value).__name__


def uuid_arg(value: object, argument: str) -> str:
    """A UUID in canonical hyphenated form (as the workers build S3 keys from it)."""
    if not isinstance(value, str) or not _UUID_RE.fullmatch(value):
        raise InvalidArgument(argument, f"must be a UUID, got {_shown(value)}")
    return value


def one_of(value: object, allowed: Sequence[str], argument: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InvalidArgument(argument, f"must be one of {', '.join(allowed)}; got {_shown(value)}")
    return value


def letter_reference(value: object, argument: str = "reference") -> str:
    if not isinstance(value, str) or not _REFERENCE_RE.fullmatch(value):
        raise InvalidArgument(
            argument, f"must be 1-32 characters of A-Z and 0-9, got {_shown(value)}"
        )
    return value


def timestamp(value: object, argument: str) -> datetime:
    """ISO 8601 text or a datetime, as an aware datetime; no timezone means UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text[-1] in "Zz":
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidArgument(
                argument, f"must be an ISO 8601 timestamp, got {_shown(value)}"
            ) from None
    else:
        raise InvalidArgument(argument, f"must be an ISO 8601 timestamp, got {_shown(value)}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment


def isoformat(moment: datetime) -> str:
    """UTC, second precision, trailing Z: the form the workers write."""
    text = moment.astimezone(timezone.utc).replace(microsecond=0).isoformat()
    return text.replace("+00:00", "Z")


def scheduled_for(value: object, now: datetime | None = None) -> str:
    """A start time at most seven days ahead (a time in the past means: start now)."""
    due = timestamp(value, "scheduled_for")
    current = now or datetime.now(timezone.utc)
    if due - current > MAX_SCHEDULE_AHEAD:
        raise InvalidArgument("scheduled_for", f"may be at most 7 days ahead, got {isoformat(due)}")
    return isoformat(due)


def report_kind(value: object, extra_kinds: Iterable[str] = ()) -> str:
    """A built-in report kind or one of ``extra_kinds`` (the deployment's plug-in kinds)."""
    allowed = (*names.REPORT_KINDS, *extra_kinds)
    if not isinstance(value, str) or not _KIND_RE.fullmatch(value) or value not in allowed:
        raise InvalidArgument("kind", f"must be one of {', '.join(allowed)}; got {_shown(value)}")
    return value


def json_object(value: object, argument: str) -> dict[str, Any]:
    """A mapping with text keys that JSON can carry as it is."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgument(argument, f"must be a mapping, got {type(value).__name__}")
    found = dict(value)
    for name in found:
        if not isinstance(name, str):
            raise InvalidArgument(argument, f"keys must be text, got {type(name).__name__}")
    try:
        json.dumps(found, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(argument, f"must be JSON: {error}") from None
    return found


def flag(value: object, argument: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(argument, f"must be true or false, got {type(value).__name__}")
    return value


def positive_int(value: object, argument: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(argument, f"must be a whole number >= {minimum}, got {value!r}")
    return value


def placeholder_names(value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidArgument("placeholders", "must be a list of column names")
    found = list(value)
    for name in found:
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgument("placeholders", f"must be non-empty names, got {_shown(name)}")
    return found


def queue_prefix(value: object) -> str:
    """Letters, digits, '.', '_' and '-', at most 64 (e.g. ``preview-``)."""
    if not isinstance(value, str) or not _QUEUE_PREFIX_RE.fullmatch(value):
        raise InvalidArgument(
            "queue_prefix",
            f"must be at most 64 of A-Z a-z 0-9 . _ -, got {_shown(value)}",
        )
    return value


def request_id(value: object) -> str:
    """A request id to carry in the message header (it appears in log lines, so no spaces)."""
    if not isinstance(value, str) or not _REQUEST_ID_RE.fullmatch(value):
        raise InvalidArgument(
            "request_id", f"must be 1-128 of A-Z a-z 0-9 . _ : / + = -, got {_shown(value)}"
        )
    return value
