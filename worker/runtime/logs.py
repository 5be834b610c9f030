"""Logging: text or JSON, every line carrying the task id, task name, service id and upload id.

The context comes from a contextvar set by the task base class, so workflow code just logs.
Recipients and personalisation are never passed to a logger anywhere in this project; the
context carries ids only.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from pythonjsonlogger.json import JsonFormatter

CONTEXT_FIELDS = ("task_id", "task_name", "service_id", "upload_id")
# The web request that started the task (the ``notify_request_id`` message header), when the
# sender set one; "-" otherwise.
REQUEST_ID_FIELD = "request_id"
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "notify_log_context", default=_EMPTY
)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ids to every log line inside the block."""
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def clean_request_id(value: object) -> str | None:
    """A sender's request id as it may appear in a log line: anything else (a newline that
    would forge a line, say) shows as "invalid"."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) and _REQUEST_ID_RE.fullmatch(value) else "invalid"


def carried_request_id(value: object) -> str | None:
    """A request id to put on a message sent on the sender's behalf: a valid one, else none
    (a forged one is not passed on)."""
    request_id = clean_request_id(value)
    return None if request_id == "invalid" else request_id


def current_request_id() -> str | None:
    """The request id of the task running here, to carry on to the messages it sends."""
    return _context.get().get(REQUEST_ID_FIELD)


# Set by worker.runtime.tracing when traces are on: the current (trace_id, span_id) in hex, or
# None outside a span. Unset (and free) otherwise.
_trace_ids: Callable[[], tuple[str, str] | None] | None = None


def set_trace_ids(lookup: Callable[[], tuple[str, str] | None] | None) -> None:
    global _trace_ids
    _trace_ids = lookup


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        for name in (*CONTEXT_FIELDS, REQUEST_ID_FIELD):
            if not hasattr(record, name):
                setattr(record, name, context.get(name, "-"))
        if _trace_ids is not None:
            ids = _trace_ids()
            if ids is not None:  # JSON lines carry them as extra fields
                record.trace_id, record.span_id = ids
        return True


TEXT_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s [%(task_name)s %(task_id)s "
    "service=%(service_id)s upload=%(upload_id)s request=%(request_id)s] %(message)s"
)


def configure(level: str = "INFO", fmt: str = "text", stream: Any = None) -> None:
    """Install one handler on the root logger (idempotent)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s "
                + " ".join(f"%({f})s" for f in (*CONTEXT_FIELDS, REQUEST_ID_FIELD)),
                rename_fields={"levelname": "level", "asctime": "time"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_notify", False)]:
        root.removeHandler(old)
    handler._notify = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # botocore logs request parameters at DEBUG; keep it quiet even when we are verbose.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))
