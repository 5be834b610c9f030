"""OpenTelemetry traces: off unless the standard ``OTEL_*`` variables ask for them.

On when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or
``OTEL_TRACES_EXPORTER`` is set, and neither ``OTEL_SDK_DISABLED=true`` nor
``OTEL_TRACES_EXPORTER=none``. Then every worker and beat process exports spans over OTLP
(HTTP/protobuf; ``OTEL_TRACES_EXPORTER=console`` prints them instead), named by
``OTEL_SERVICE_NAME`` (default ``notify-worker``), sampled by ``OTEL_TRACES_SAMPLER`` as the SDK
reads it:

* the task (Celery's instrumentation), continuing the trace whose context the sender put in
  the message headers: a web app that instruments Celery gets one trace from its request to
  the task;
* the task's S3 calls (botocore's instrumentation) and Redis commands (redis-py's, which
  includes kombu publishing the sink batches);
* ``trace_id`` and ``span_id`` on every JSON log line written inside a span.

A Redis or S3 call outside any span (the consumer polling the broker, say) would be a trace of
its own: those are dropped by the sampler, so the traces are the work, not the polling.
With tracing off nothing is imported or patched.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from celery import signals

from worker.runtime import logs

logger = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "notify-worker"
_provider: Any = None
_instrumentors: list[Any] = []


def configured(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if (env.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
        return False
    exporter = (env.get("OTEL_TRACES_EXPORTER") or "").strip().lower()
    if exporter == "none":
        return False
    return bool(
        exporter
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def enabled() -> bool:
    return _provider is not None


def _exporter_from_env() -> Any:
    kind = (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(",")[0].strip().lower()
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if kind != "otlp":
        logger.warning("OTEL_TRACES_EXPORTER=%s is not supported here; using otlp", kind)
    # Reads OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT, _CERTIFICATE itself.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def setup(exporter: Any = None, *, batch: bool = True) -> Any:
    """Install the tracer provider and the Celery, botocore and redis instrumentations.

    ``exporter``: where spans go (default from the environment); ``batch=False`` exports each
    span as it ends (tests). Idempotent; returns the provider.
    """
    global _provider
    if _provider is not None:
        return _provider
    from opentelemetry import trace
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import _get_from_env_or_default

    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME}
    )
    provider = TracerProvider(
        resource=resource, sampler=_NoOrphanClientSpans(_get_from_env_or_default())
    )
    exporter = exporter if exporter is not None else _exporter_from_env()
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    # The global provider can be set once per process; a second setup (tests) uses its own.
    if trace.get_tracer_provider() is not provider:
        provider = trace.get_tracer_provider()
        provider.add_span_processor(processor)
    for instrumentor in (CeleryInstrumentor(), BotocoreInstrumentor(), RedisInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)
            _instrumentors.append(instrumentor)
    logs.set_trace_ids(current_ids)
    _provider = provider
    logger.info("traces on: exporting with %s", type(exporter).__name__)
    return provider


def shutdown() -> None:
    """Flush, remove the instrumentations and stop adding ids to log lines."""
    global _provider
    if _provider is None:
        return
    _provider.force_flush()
    for instrumentor in _instrumentors:
        instrumentor.uninstrument()
    _instrumentors.clear()
    logs.set_trace_ids(None)
    _provider = None


def current_ids() -> tuple[str, str] | None:
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


class _NoOrphanClientSpans:
    """Sampler: drop a client span with no parent (broker polling, a stray S3 call); everything
    else as the configured sampler decides."""

    def __init__(self, delegate: Any) -> None:
        self.delegate = delegate

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: Any = None,
        attributes: Any = None,
        links: Sequence[Any] | None = None,
        trace_state: Any = None,
    ) -> Any:
        from opentelemetry import trace
        from opentelemetry.sdk.trace.sampling import Decision, SamplingResult

        parent = trace.get_current_span(parent_context).get_span_context()
        if kind == trace.SpanKind.CLIENT and not parent.is_valid:
            return SamplingResult(Decision.DROP)
        return self.delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"NoOrphanClientSpans({self.delegate.get_description()})"


def _setup_from_env(**_: Any) -> None:
    if not configured():
        return
    try:
        setup()
    except Exception as error:  # tracing must never stop the worker
        logger.error("traces not started: %s: %s", type(error).__name__, error)


# The main process (and so any pool child forked from it: the SDK's batch processor restarts
# its thread after a fork) and beat.
signals.worker_init.connect(_setup_from_env, weak=False)
signals.beat_init.connect(_setup_from_env, weak=False)
