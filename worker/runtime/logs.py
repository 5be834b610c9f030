"""Logging: text or JSON, every line carrying the task id, task name, service id and upload id.

The context comes from a contextvar set by the task base class, so workflow code just logs.
Recipients and personalisation are never passed to a logger anywhere in this project; the
context carries ids only.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from pythonjsonlogger.json import JsonFormatter

CONTEXT_FIELDS = ("task_id", "task_name", "service_id", "upload_id")
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


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, context.get(name, "-"))
        return True


TEXT_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s [%(task_name)s %(task_id)s "
    "service=%(service_id)s upload=%(upload_id)s] %(message)s"
)


def configure(level: str = "INFO", fmt: str = "text", stream: Any = None) -> None:
    """Install one handler on the root logger (idempotent)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s "
                + " ".join(f"%({f})s" for f in CONTEXT_FIELDS),
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
