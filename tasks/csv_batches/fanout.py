"""Fan-out: deterministic notification ids and publishing batches to the row sink.

One broker connection (a kombu producer) serves a whole dispatch pass; each batch is one
message with one keyword argument ``batch`` (docs/tasks.md). ``kwargsrepr`` keeps recipients out of
task events, Flower and logs; ``ignore_result`` keeps a million rows from leaving results in the
backend; the job's own result never lists the batches.

The hot path is ``BatchEncoder``: it writes each row's JSON text directly (one f-string, made
for the file's columns, with the notification id, the row number and the C-escaped strings)
instead of building dicts for ``json.dumps`` to walk, and ``BatchPublisher.publish_encoded``
hands that text to Celery as an already-serialised protocol-2 body, so the batch is encoded
once. The message is the one ``send_task`` would send (same headers, routing, retry policy and
publish signals); only the body's bytes are ours, and they parse to exactly the dict batch.
One thing is left out: the ``task-sent`` event (a second publish per batch, about a tenth of a
batch's publishing cost). Flower still sees every batch from the events of the worker that
runs it (received, started, succeeded), and the job's own task has all its events.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from json.encoder import encode_basestring  # the C escaper of json.dumps(ensure_ascii=False)
from types import TracebackType
from typing import Any

from celery import Celery
from celery.app.task import extract_exec_options
from celery.utils import uuid as task_uuid

from worker.runtime.logs import current_request_id
from worker.runtime.queues import REQUEST_ID_HEADER

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


# The protocol-2 "embed" part of a task body: no callbacks, errbacks, chain or chord.
_EMBED_JSON = '{"callbacks":null,"errbacks":null,"chain":null,"chord":null}'


class BatchEncoder:
    """JSON text of a job's sink batches, in the shape docs/tasks.md gives, built row by row.

    ``row(row_number, (recipient, values))`` gives one row's JSON (``values``: the
    personalisation values in the order of ``keys``); ``body(rows)`` wraps up to 1,000 of them
    as the Celery protocol-2 body ``[[], {"batch": {...}}, {embed}]``. Parsed, the text equals
    ``json.dumps`` of the dict batch: strings go through ``json``'s own C escaper, ids are
    ``uuid5(UUID(upload_id), str(row_number))`` (SHA-1 of namespace + name, version and variant
    bits set: the same digits ``uuid.uuid5`` gives, without the UUID object).
    """

    def __init__(self, base: Mapping[str, Any], keys: Iterable[str]) -> None:
        upload_id = str(base["upload_id"])
        head = json.dumps(dict(base), separators=(",", ":"), ensure_ascii=False)
        self._prefix = '[[],{"batch":' + head[:-1] + ',"rows":['
        self._suffix = "]}}," + _EMBED_JSON + "]"
        # A dict keeps the first position and the last value of a repeated key: so does this.
        names = list(dict.fromkeys(keys))
        self.width = len(names)
        self.row = _row_function(uuid.UUID(upload_id).bytes, names)

    def body(self, rows: list[str]) -> str:
        """The task body (protocol 2) carrying these encoded rows as ``batch``."""
        return self._prefix + ",".join(rows) + self._suffix


def _row_function(namespace: bytes, names: list[str]) -> Callable[[int, Any], str]:
    """``row(row_number, (recipient, values))`` for these personalisation keys.

    Written as one f-string for this file's columns, compiled once per job: an f-string
    builds the row in one pass, markedly cheaper than ``%`` (or ``str.join``) over a dozen
    pieces, and the row is the hot path. The generated source holds only fixed text and
    generated names (``v0``, ``k0``...): the keys, already JSON-escaped, and everything else
    from the file are values in its namespace, never source code.
    """
    env: dict[str, Any] = {
        "sha1": _sha1,
        "variant": _VARIANT,
        "escape": encode_basestring,
        "namespace": namespace,
    }
    fields = []
    for index, name in enumerate(names):
        env[f"k{index}"] = encode_basestring(name)
        fields.append(f"{{k{index}}}:{{escape(v{index})}}")
    unpack = "".join(f"v{index}, " for index in range(len(names)))
    source = (
        "def row(row_number, valid):\n"
        f"    recipient, ({unpack}) = valid\n"
        '    x = sha1(namespace + b"%d" % row_number).hexdigest()\n'
        # Version 5 in the 13th hex digit, RFC 4122 variant (10xx) in the 17th.
        '    return f\'{{"notification_id":"{x[:8]}-{x[8:12]}-5{x[13:16]}-{variant[x[16]]}'
        '{x[17:20]}-{x[20:32]}","row_number":{row_number},"recipient":'
        '{escape(recipient)},"personalisation":{{' + ",".join(fields) + "}}}}'\n"
    )
    exec(compile(source, "<BatchEncoder.row>", "exec"), env)  # noqa: S102 (no data in source)
    return env["row"]


class BatchPublisher:
    """Publishes sink batches over one producer for its lifetime (a context manager)."""

    def __init__(self, app: Celery, task_name: str, queue: str) -> None:
        self.app = app
        self.task_name = task_name
        self.queue = queue
        self.messages = 0
        self._context: Any = None
        self._producer: Any = None
        self._route: _SinkRoute | None = None
        # The job's request id goes on with its batches, so their log lines carry it too.
        request_id = current_request_id()
        self.headers = {REQUEST_ID_HEADER: request_id} if request_id else None

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
        """Publish a batch given as a dict (Celery serialises it)."""
        rows = len(batch["rows"])
        self.app.send_task(
            self.task_name,
            kwargs={"batch": batch},
            queue=self.queue,
            producer=self._producer,
            kwargsrepr=_kwargsrepr(rows),
            argsrepr="()",
            ignore_result=True,
            add_to_parent=False,
            headers=self.headers,
        )
        self.messages += 1

    def publish_encoded(self, body: str, rows: int) -> None:
        """Publish a batch whose task body ``BatchEncoder.body`` already wrote.

        The message is what ``send_task`` builds (``as_task_v2`` headers with the sink task's
        own time limits, the same routing, retry policy and publish signals), with the body
        handed over as serialised JSON so that kombu does not encode it again. No
        ``task-sent`` event (see the module's docstring).
        """
        app = self.app
        if not isinstance(app, Celery):
            # A stand-in for the app (unit tests): it takes the batch as send_task would.
            self.publish(json.loads(body)[1]["batch"])
            return
        if self._route is None:
            self._route = _SinkRoute(app, self.task_name, self.queue)
        route = self._route
        if route.plain:
            self.publish(json.loads(body)[1]["batch"])
            return
        task_id = task_uuid()
        root_id = parent_id = None
        parent = app.current_worker_task
        if parent is not None:  # as send_task: the batches are children of the job's task
            root_id = parent.request.root_id or parent.request.id
            parent_id = parent.request.id
        message = app.amqp.as_task_v2(
            task_id,
            self.task_name,
            argsrepr="()",
            kwargsrepr=_kwargsrepr(rows),
            reply_to=app.thread_oid,
            time_limit=route.time_limit,
            soft_time_limit=route.soft_time_limit,
            create_sent_event=False,
            root_id=root_id,
            parent_id=parent_id,
            ignore_result=True,
        )
        app.amqp.send_task_message(
            self._producer,
            self.task_name,
            message._replace(body=body),
            content_type="application/json",
            content_encoding="utf-8",
            headers=self.headers,
            **route.options,
        )
        self.messages += 1


class _SinkRoute:
    """What ``send_task`` works out once per task name: the registered task's execution
    options (time limits, priority...) under the explicit queue, routed by the app's router."""

    def __init__(self, app: Celery, task_name: str, queue: str) -> None:
        task = app.tasks.get(task_name)  # None for a sink task only another app knows
        options: dict[str, Any] = {}
        if task is not None:
            options = {k: v for k, v in extract_exec_options(task).items() if v is not None}
        options["queue"] = queue
        self.time_limit = options.pop("time_limit", None)
        self.soft_time_limit = options.pop("soft_time_limit", None)
        # A task with an expiry gets it per message from send_task: rare enough to take that
        # path rather than copy its date arithmetic.
        self.plain = options.get("expires") is not None
        self.options = app.amqp.router.route(options, task_name, (), {}, task)


def _kwargsrepr(rows: int) -> str:
    return f"{{'batch': '<{rows} rows>'}}"
