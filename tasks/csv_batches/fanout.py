"""Fan-out: deterministic notification ids and publishing batches to the row sink.

One broker connection (a kombu producer) serves a whole dispatch pass; each batch is one
message with one keyword argument ``batch`` (SPEC §4). ``kwargsrepr`` keeps recipients out of
task events, Flower and logs; ``ignore_result`` keeps a million rows from leaving results in the
backend; ``add_to_parent=False`` keeps the job's own result from listing every batch.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any

from celery import Celery

MAX_BATCH_ROWS = 1000

try:  # CPython's built-in SHA-1: less per-call overhead than OpenSSL's for 20-byte inputs
    from _sha1 import sha1 as _sha1
except ImportError:  # pragma: no cover - other builds
    _sha1 = functools.partial(hashlib.sha1, usedforsecurity=False)
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def notification_id_factory(upload_id: str) -> Callable[[int], str]:
    """``row_number -> str(uuid5(UUID(upload_id), str(row_number)))``, about 3x faster.

    uuid5 is SHA-1 of namespace bytes + name with the version and variant bits set; building
    the string from the hex digest directly skips the UUID object.
    """
    prefix = uuid.UUID(upload_id).bytes
    sha1 = _sha1
    variant = _VARIANT

    def notification_id(row_number: int) -> str:
        x = sha1(prefix + b"%d" % row_number).hexdigest()
        # Version 5 in the 13th hex digit, RFC 4122 variant (10xx) in the 17th.
        return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{variant[x[16]]}{x[17:20]}-{x[20:32]}"

    return notification_id


class BatchPublisher:
    """Publishes sink batches over one producer for its lifetime (a context manager)."""

    def __init__(self, app: Celery, task_name: str, queue: str) -> None:
        self.app = app
        self.task_name = task_name
        self.queue = queue
        self.messages = 0
        self._context: Any = None
        self._producer: Any = None

    def __enter__(self) -> BatchPublisher:
        self._context = self.app.producer_or_acquire()
        self._producer = self._context.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        context, self._context, self._producer = self._context, None, None
        if context is not None:
            context.__exit__(exc_type, exc, tb)

    def publish(self, batch: dict[str, Any]) -> None:
        rows = len(batch["rows"])
        self.app.send_task(
            self.task_name,
            kwargs={"batch": batch},
            queue=self.queue,
            producer=self._producer,
            kwargsrepr=f"{{'batch': '<{rows} rows>'}}",
            argsrepr="()",
            ignore_result=True,
            add_to_parent=False,
        )
        self.messages += 1
