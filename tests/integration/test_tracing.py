"""Traces: one trace from the web app's enqueue, through the task, to its S3 calls and Redis
commands (in-memory exporter, the session's thread worker); JSON log lines carry the ids; a
prefork worker exports its spans when OTEL_TRACES_EXPORTER is set."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest

from tests.letters_fixtures import put_letter
from worker.client import send_by_name
from worker.runtime import logs, queues, tracing

pytestmark = pytest.mark.integration


@pytest.fixture
def spans():
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracing.setup(exporter, batch=False)
    yield exporter
    tracing.shutdown()
    exporter.clear()


def test_one_trace_from_the_client_to_the_s3_calls(celery_worker, s3, redis_client, spans):
    from opentelemetry import trace

    letter = put_letter(s3)
    # The web app: its request span is current when it enqueues through the client; Celery's
    # instrumentation (installed by tracing.setup here, by the web app's own set-up there)
    # puts the trace context in the message headers.
    tracer = trace.get_tracer("web-app")
    with tracer.start_as_current_span("POST /letters") as request_span:
        sent = send_by_name(queues.LETTERS_MOVE_TRANSIENT, letter.args())
    assert sent.get(timeout=30)["status"] == "ok"
    trace_id = request_span.get_span_context().trace_id

    deadline = time.monotonic() + 10
    while True:
        found = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
        names = {s.name for s in found}
        if any(n.startswith("run/") for n in names) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    by_id = {s.context.span_id: s for s in found}
    publish = next(s for s in found if s.name == f"apply_async/{queues.LETTERS_MOVE_TRANSIENT}")
    run = next(s for s in found if s.name == f"run/{queues.LETTERS_MOVE_TRANSIENT}")
    assert publish.parent.span_id == request_span.get_span_context().span_id
    assert run.parent.span_id == publish.context.span_id  # continued from the headers
    s3_calls = [s for s in found if s.attributes.get("rpc.service") == "S3"]
    operations = {s.attributes.get("rpc.method") for s in s3_calls}
    assert {"HeadObject", "CopyObject", "DeleteObject"} <= operations, operations
    for span in s3_calls:  # each S3 call is inside the task's span
        parent = span
        while parent.parent is not None and parent.context.span_id != run.context.span_id:
            parent = by_id[parent.parent.span_id]
        assert parent is run
    assert any(s.attributes.get("db.system") == "redis" for s in found)  # the lease and state
    # Spans carry operation names and buckets, never the letter's metadata or recipient.
    for span in found:
        assert "Secret" not in json.dumps({k: str(v) for k, v in span.attributes.items()})


def test_json_log_lines_carry_trace_and_span_ids(spans):
    from opentelemetry import trace

    stream = io.StringIO()
    logs.configure("INFO", "json", stream=stream)
    try:
        log = logging.getLogger("tests.tracing")
        log.info("outside")
        with trace.get_tracer("t").start_as_current_span("work") as span:
            log.info("inside")
        context = span.get_span_context()
    finally:
        logs.configure("INFO", "text")
    outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "trace_id" not in outside
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")


def test_configured_only_by_the_standard_variables():
    assert not tracing.configured({})
    assert tracing.configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.configured({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing.configured({"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.configured(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}
    )


def test_off_by_default_nothing_imported_or_patched():
    """Without the variables a worker process loads neither the tracing SDK, the
    instrumentations nor prometheus-client, and its log lines carry no ids. (redis-py imports
    OpenTelemetry's API and metrics SDK itself when they are installed.)"""
    import subprocess
    import sys

    code = (
        "import sys; from worker.runtime.app import app; from worker.runtime import logs, tracing;"
        "app.loader.import_default_modules();"
        "from celery import signals; signals.worker_init.send(sender=None);"
        "assert not tracing.enabled() and logs._trace_ids is None;"
        "print(sorted({m for m in sys.modules if m.startswith(('opentelemetry.instrumentation', "
        "'opentelemetry.exporter', 'opentelemetry.sdk.trace', 'prometheus_client'))}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_prefork_worker_exports_task_and_s3_spans(prefork_worker, s3, redis_client):
    """OTEL_TRACES_EXPORTER=console: the pool child prints its spans to the worker's log."""
    from worker.runtime.app import app

    # A queue of its own: the session's thread worker (if started) must not take the task.
    queue = "tracing-test"
    handle = prefork_worker(
        queues=queue, OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="notify-test"
    )
    letter = put_letter(s3)
    sent = app.send_task(queues.LETTERS_MOVE_TRANSIENT, kwargs=letter.args(), queue=queue)
    assert sent.get(timeout=30)["status"] == "ok"
    deadline = time.monotonic() + 20
    while f"run/{queues.LETTERS_MOVE_TRANSIENT}" not in handle.log():
        assert time.monotonic() < deadline, handle.log()[-3000:]
        time.sleep(0.5)
    log = handle.log()
    assert '"service.name": "notify-test"' in log
    assert '"rpc.method": "CopyObject"' in log
