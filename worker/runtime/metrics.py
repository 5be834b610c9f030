"""Prometheus metrics: off unless ``NOTIFY_METRICS_PORT`` is set, and then cheap.

``notify-worker worker`` serves ``GET /metrics`` from its main process. Prefork children come
and go (``--max-tasks-per-child``, crashes), so every process writes its figures to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode) and the main process adds
them up on each scrape: a child's counts outlive the child. The directory is made (or, when the
operator names one, emptied) at start-up, before any child exists.

``notify-worker beat`` serves its own: its last tick, whether it holds the scheduler lock, and
the gauges read from Redis (queues, jobs, dead letters, overdue transient letters). Those are
computed at scrape time by the beat holding the lock and by no other process: exactly one beat
is active, so every gauge has one source, and workers never scan Redis for metrics.

Nothing here sits on a per-row path. Task figures come from Celery's task_prerun/task_postrun
signals (one dict update each), unit-of-work figures (rows, letters moved, objects deleted,
report rows) from each task's JSON result when it ends, and S3 figures from botocore event
handlers registered on every S3 client. With the variable unset none of that is connected.
Label values are task names, queue names, purposes, report kinds, botocore operation names and
S3 error codes: never ids, keys or recipients.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from celery import signals

from worker.runtime import queues
from worker.runtime.redis_state import key

logger = logging.getLogger(__name__)

PORT_ENV = "NOTIFY_METRICS_PORT"
HOST_ENV = "NOTIFY_METRICS_HOST"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_HOST = "127.0.0.1"
SENT_AT_HEADER = "notify_sent_at"  # set on publish; the worker measures queue wait from it

# Buckets: tasks run from milliseconds (a letter move) to an hour (a big CSV job).
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600)
WAIT_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600)
S3_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

_ERROR_CODE = re.compile(r"^[A-Za-z0-9.]{1,64}$")
_on = False
_m: Any = None  # the metric objects, once set up
_started: dict[str, float] = {}  # task id -> perf_counter at task_prerun (this process)
_owned_dir: str | None = None


def configured_port(environ: Mapping[str, str] | None = None) -> int | None:
    """The port from ``NOTIFY_METRICS_PORT``, or None when metrics are off."""
    from storage.errors import ConfigurationError

    env = os.environ if environ is None else environ
    raw = (env.get(PORT_ENV) or "").strip()
    if not raw:
        return None
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ConfigurationError(
            f"{PORT_ENV} must be a TCP port number (1-65535), not {raw[:20]!r}.",
            code="bad_configuration",
        )
    return port


def configured_host(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return (env.get(HOST_ENV) or "").strip() or DEFAULT_HOST


def enabled() -> bool:
    return _on


# --- set-up ------------------------------------------------------------------------------------


def prepare_multiprocess_dir() -> str:
    """Point prometheus-client at an empty directory shared with the pool children.

    An operator's ``PROMETHEUS_MULTIPROC_DIR`` is emptied (files left by an earlier run would
    be added to this one's); otherwise a private temporary directory is made and removed at
    exit. Must run in the main process before the pool forks.
    """
    global _owned_dir
    path = os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())
    if path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.unlink(os.path.join(path, name))
    else:
        path = tempfile.mkdtemp(prefix="notify-metrics-")
        _owned_dir = path
        owner = os.getpid()
        atexit.register(lambda: os.getpid() == owner and shutil.rmtree(path, ignore_errors=True))
    os.environ[MULTIPROC_ENV] = path
    # prometheus-client picks its value class when first imported; choose again now.
    from prometheus_client import values

    values.ValueClass = values.get_value_class()
    return path


@dataclass
class WorkerMetrics:
    tasks: Any
    task_duration: Any
    queue_wait: Any
    csv_rows: Any
    csv_jobs: Any
    s3_requests: Any
    s3_duration: Any
    s3_bytes: Any
    letters_moved: Any
    report_rows: Any
    cleanup_deleted: Any


def _worker_metrics() -> WorkerMetrics:
    from prometheus_client import Counter, Histogram

    # registry=None: in multiprocess mode the main process's collector reads the files.
    return WorkerMetrics(
        tasks=Counter(
            "notify_tasks_total", "Tasks ended, by outcome.", ["task", "status"], registry=None
        ),
        task_duration=Histogram(
            "notify_task_duration_seconds",
            "Time a task ran (its own work, not its wait in the queue).",
            ["task"],
            buckets=TASK_BUCKETS,
            registry=None,
        ),
        queue_wait=Histogram(
            "notify_task_queue_wait_seconds",
            "Time from publish to start, for messages that carry their publish time.",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=None,
        ),
        csv_rows=Counter(
            "notify_csv_rows_total",
            "CSV rows of jobs that ended here, by verdict (counted once per job, at its end).",
            ["result"],
            registry=None,
        ),
        csv_jobs=Counter(
            "notify_csv_jobs_total",
            "CSV jobs that ended here, by job status.",
            ["status"],
            registry=None,
        ),
        s3_requests=Counter(
            "notify_s3_requests_total",
            "S3 API calls (botocore's retries included in one call), by outcome.",
            ["operation", "outcome"],
            registry=None,
        ),
        s3_duration=Histogram(
            "notify_s3_request_duration_seconds",
            "S3 API call latency, retries included.",
            ["operation"],
            buckets=S3_BUCKETS,
            registry=None,
        ),
        s3_bytes=Counter(
            "notify_s3_bytes_total",
            "Object bytes sent to S3 (written) and announced by S3 for reads (read).",
            ["direction"],
            registry=None,
        ),
        letters_moved=Counter(
            "notify_letters_moved_total",
            "Transient letters moved into permanent storage (repeats of a done move excluded).",
            registry=None,
        ),
        report_rows=Counter(
            "notify_report_rows_total", "Rows written to new reports.", ["kind"], registry=None
        ),
        cleanup_deleted=Counter(
            "notify_cleanup_objects_deleted_total",
            "Objects deleted by cleanup sweeps.",
            ["purpose"],
            registry=None,
        ),
    )


def setup_worker() -> None:
    """Metric objects and hooks for a worker's main process (children inherit them)."""
    global _on, _m
    if _on:
        return
    prepare_multiprocess_dir()
    _m = _worker_metrics()
    from storage.client import add_client_hook, reset_client

    add_client_hook(instrument_s3_client)
    reset_client()  # a client made before now has no handlers
    signals.task_prerun.connect(_task_prerun, weak=False)
    signals.task_postrun.connect(_task_postrun, weak=False)
    signals.worker_process_shutdown.connect(_child_exit, weak=False)
    _on = True


def serve(registry: Any, port: int, host: str) -> Any:
    """Start the HTTP server thread; a port already in use stops the process with a message."""
    from prometheus_client import start_http_server

    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        logger.critical("cannot serve metrics on %s:%d: %s", host, port, error.strerror or error)
        raise SystemExit(2) from error
    logger.info("metrics at http://%s:%d/metrics", host, port)
    return server


def worker_registry() -> Any:
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=os.environ[MULTIPROC_ENV])
    return registry


# --- task hooks --------------------------------------------------------------------------------


def _task_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    _started[task_id or ""] = time.perf_counter()
    request = getattr(task, "request", None)
    sent_at = getattr(request, SENT_AT_HEADER, None) if request is not None else None
    if sent_at is not None:
        try:
            wait = time.time() - float(sent_at)
        except (TypeError, ValueError):
            return
        queue = (request.delivery_info or {}).get("routing_key") or "unknown"
        _m.queue_wait.labels(queue).observe(max(wait, 0.0))


def _task_postrun(
    task_id: str | None = None,
    task: Any = None,
    retval: Any = None,
    state: str | None = None,
    **_: Any,
) -> None:
    started = _started.pop(task_id or "", None)
    name = getattr(task, "name", "unknown")
    if started is not None:
        _m.task_duration.labels(name).observe(time.perf_counter() - started)
    _m.tasks.labels(name, task_status(state, retval)).inc()
    if isinstance(retval, dict):
        observe_result(name, retval)


def task_status(state: str | None, retval: Any) -> str:
    """ok, skipped, failed or retry: the task's JSON result's status, or Celery's state."""
    if state == "RETRY":
        return "retry"
    if state != "SUCCESS":
        return "failed"
    status = retval.get("status") if isinstance(retval, dict) else None
    return status if status in ("ok", "skipped", "failed") else "ok"


def observe_result(task_name: str, result: Mapping[str, Any]) -> None:
    """Count a finished unit of work from its result (one call per task, never per row)."""
    status = result.get("status")
    if task_name == queues.CSV_PROCESS_BATCH:
        job_status = result.get("job_status")
        # "skipped" results repeat an outcome already counted when the job ended.
        if status in ("ok", "failed") and job_status:
            _m.csv_jobs.labels(str(job_status)).inc()
            _m.csv_rows.labels("dispatched").inc(_int(result.get("rows_dispatched")))
            _m.csv_rows.labels("invalid").inc(_int(result.get("rows_invalid")))
    elif task_name == queues.LETTERS_MOVE_TRANSIENT:
        if status == "ok" and not result.get("already_moved"):
            _m.letters_moved.inc()
    elif task_name == queues.REPORTS_GENERATE:
        if status == "ok" and isinstance(result.get("kind"), str):
            _m.report_rows.labels(result["kind"]).inc(_int(result.get("rows")))
    elif task_name == queues.CLEANUP_SWEEP:
        deleted = _int(result.get("deleted"))
        if deleted and isinstance(result.get("purpose"), str):
            _m.cleanup_deleted.labels(result["purpose"]).inc(deleted)


def _int(value: Any) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


def _child_exit(pid: int | None = None, **_: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid or os.getpid())


# --- S3 ----------------------------------------------------------------------------------------

_READ_OPERATIONS = frozenset({"GetObject"})
_WRITE_OPERATIONS = frozenset({"PutObject", "UploadPart"})


def instrument_s3_client(client: Any) -> None:
    """Register the handlers that count and time every call of this client."""
    events = client.meta.events
    events.register("before-call.s3", _s3_before, unique_id="notify-metrics-before")
    events.register("after-call.s3", _s3_after, unique_id="notify-metrics-after")
    events.register("after-call-error.s3", _s3_error, unique_id="notify-metrics-error")


def _s3_before(params: Any = None, model: Any = None, context: Any = None, **_: Any) -> None:
    if context is not None:
        context["notify_started"] = time.perf_counter()
    if model is not None and model.name in _WRITE_OPERATIONS and isinstance(params, dict):
        _m.s3_bytes.labels("written").inc(_body_length(params.get("body")))


def _body_length(body: Any) -> int:
    """Bytes left to send in a request body (bytes, or a seekable stream as botocore makes)."""
    if isinstance(body, bytes | bytearray | memoryview):
        return len(body)
    try:
        here = body.tell()
        end = body.seek(0, os.SEEK_END)
        body.seek(here)
        return max(end - here, 0)
    except (AttributeError, OSError, ValueError):
        return 0


def _s3_after(
    http_response: Any = None, parsed: Any = None, model: Any = None, context: Any = None, **_: Any
) -> None:
    operation = model.name if model is not None else "unknown"
    _s3_time(operation, context)
    outcome = "ok"
    status = getattr(http_response, "status_code", 200)
    if status >= 300 and isinstance(parsed, dict):
        code = str((parsed.get("Error") or {}).get("Code") or status)
        outcome = code if _ERROR_CODE.match(code) else "other"
    elif operation in _READ_OPERATIONS and isinstance(parsed, dict):
        _m.s3_bytes.labels("read").inc(_int(parsed.get("ContentLength")))
    _m.s3_requests.labels(operation, outcome).inc()


def _s3_error(exception: Any = None, model: Any = None, context: Any = None, **_: Any) -> None:
    # No HTTP answer at all (connection refused, timeout): the exception's class names it.
    operation = model.name if model is not None else "unknown"
    _s3_time(operation, context)
    name = type(exception).__name__ if exception is not None else "other"
    _m.s3_requests.labels(operation, name if _ERROR_CODE.match(name) else "other").inc()


def _s3_time(operation: str, context: Any) -> None:
    started = context.get("notify_started") if context is not None else None
    if started is not None:
        _m.s3_duration.labels(operation).observe(time.perf_counter() - started)


# --- publishing: the time a message was sent ----------------------------------------------------


@signals.before_task_publish.connect
def _stamp_sent_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    # One float in the headers of messages this app publishes (beat, workers, CLI); the worker
    # that runs the task turns it into queue wait time.
    if headers is not None and SENT_AT_HEADER not in headers:
        headers[SENT_AT_HEADER] = round(time.time(), 3)


# --- signals: start the exporter in the right process ------------------------------------------


@signals.worker_init.connect
def _worker_init(**_: Any) -> None:
    try:
        port = configured_port()
    except Exception as error:  # ConfigurationError: stop at start-up, naming the variable
        logger.critical("cannot start: %s", getattr(error, "message", error))
        raise SystemExit(2) from error
    if port is None:
        return
    setup_worker()
    serve(worker_registry(), port, configured_host())


# --- beat -------------------------------------------------------------------------------------

GaugeSource = Callable[[], Iterable[Any]]
_gauge_sources: list[GaugeSource] = []


def add_gauge_source(source: GaugeSource) -> None:
    """Add a callable yielding prometheus metric families, read by the active beat per scrape.

    The front-end that starts beat registers the sources that need task code (jobs by status),
    so this layer never imports the workflows.
    """
    if source not in _gauge_sources:
        _gauge_sources.append(source)


class BeatCollector:
    """Collected on each scrape of beat's exporter."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.last_tick: float | None = None
        self.lock_held_at: float | None = None

    def ticked(self) -> None:
        """Called in beat's own thread after each tick. RedBeat extends its lock at the start
        of every tick and fails the tick if it no longer holds it, so a tick that ended with
        a lock set means we held the lock then (redis-py keeps the lock's token thread-local:
        the scrape thread could not ask the lock itself)."""
        self.last_tick = time.time()
        if getattr(self.scheduler, "lock", None) is not None:
            self.lock_held_at = self.last_tick

    def active(self) -> bool:
        timeout = float(getattr(self.scheduler, "lock_timeout", 60) or 60)
        return self.lock_held_at is not None and time.time() - self.lock_held_at < timeout

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        active = self.active()
        yield GaugeMetricFamily(
            "notify_beat_active",
            "1 while this beat holds the scheduler lock (exactly one beat should).",
            value=1 if active else 0,
        )
        if self.last_tick is not None:
            yield GaugeMetricFamily(
                "notify_beat_last_tick_timestamp_seconds",
                "Unix time of this beat's last scheduler tick.",
                value=self.last_tick,
            )
        if not active:
            return  # the standby stays quiet: one source per gauge
        for source in (redis_gauges, *_gauge_sources):
            try:
                yield from source()
            except Exception as error:  # a broken source must not hide the others
                logger.warning("metrics source %s failed: %s", _name(source), type(error).__name__)


def _name(source: Any) -> str:
    return getattr(source, "__qualname__", type(source).__name__)


@signals.beat_init.connect
def _beat_init(sender: Any = None, **_: Any) -> None:
    port = configured_port()
    if port is None or sender is None:
        return
    # Beat is one process: plain in-memory values, never files shared with a worker.
    os.environ.pop(MULTIPROC_ENV, None)
    from prometheus_client import CollectorRegistry, values

    values.ValueClass = values.get_value_class()
    scheduler = sender.scheduler
    collector = BeatCollector(scheduler)
    tick = scheduler.tick

    def timed_tick(*args: Any, **kwargs: Any) -> Any:
        result = tick(*args, **kwargs)
        collector.ticked()
        return result

    scheduler.tick = timed_tick  # the service calls scheduler.tick() each loop
    registry = CollectorRegistry()
    registry.register(collector)
    serve(registry, port, configured_host())


# --- gauges read from Redis (beat only, per scrape) ---------------------------------------------

# kombu's Redis transport keeps one list per priority step: the queue's own name for priority
# 0, "{queue}\x06\x16{n}" for the others (kombu.transport.redis PRIORITY_STEPS and sep).
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
TRANSIENT_SWEEP_KEY = key("letters", "transient_sweep")
_tail_seen: dict[str, tuple[str, float]] = {}  # queue -> (id of its oldest message, first seen)
_broker: Any = None


def _broker_client() -> Any:
    """A Redis client for the broker, made by kombu from the app's broker settings (so TLS and
    Sentinel URLs work as they do for the workers)."""
    global _broker
    if _broker is None:
        from celery import current_app  # the app beat runs (importing ours would be a circle)

        connection = current_app.connection_for_read()
        _broker = (connection, connection.default_channel.client)
    return _broker[1]


def monitored_queues() -> list[str]:
    from worker.runtime.settings import get_worker_settings

    return queues.all_queues(get_worker_settings().row_sink_queue)


def redis_gauges() -> Iterable[Any]:
    """Queues (waiting, oldest message age), dead letters and the last transient-letter sweep:
    one pipeline to the broker (LLEN, LINDEX per queue) and one to the state Redis."""
    from prometheus_client.core import GaugeMetricFamily

    from worker.runtime.deadletter import DEADLETTER_KEY
    from worker.runtime.redis_state import get_redis

    names = monitored_queues()
    broker = _broker_client()
    with broker.pipeline(transaction=False) as pipe:
        for name in names:
            for suffix in PRIORITY_SUFFIXES:
                pipe.llen(name + suffix)
            pipe.lindex(name, -1)  # LPUSH in, BRPOP out: the right end is the oldest
        answers = pipe.execute()
    waiting = GaugeMetricFamily(
        "notify_queue_messages", "Messages waiting in each queue.", labels=["queue"]
    )
    oldest = GaugeMetricFamily(
        "notify_queue_oldest_message_age_seconds",
        "Age of the oldest waiting message in each queue (0 when empty).",
        labels=["queue"],
    )
    now = time.time()
    step = len(PRIORITY_SUFFIXES) + 1
    for index, name in enumerate(names):
        part = answers[index * step : (index + 1) * step]
        waiting.add_metric([name], sum(int(n or 0) for n in part[:-1]))
        oldest.add_metric([name], _message_age(name, part[-1], now))
    yield waiting
    yield oldest

    state = get_redis()
    with state.pipeline(transaction=False) as pipe:
        pipe.hlen(DEADLETTER_KEY)
        pipe.hgetall(TRANSIENT_SWEEP_KEY)
        deadletters, sweep = pipe.execute()
    yield GaugeMetricFamily(
        "notify_deadletters", "Entries in the dead-letter store.", value=int(deadletters or 0)
    )
    if sweep:
        yield from _sweep_gauges(sweep, now)


def _message_age(queue: str, raw: Any, now: float) -> float:
    """From the message's publish time when it carries one; else from when this exporter first
    saw it at the head of the queue (a lower bound that grows while it stays there)."""
    if raw is None:
        _tail_seen.pop(queue, None)
        return 0.0
    import json

    try:
        headers = json.loads(raw).get("headers") or {}
    except (ValueError, AttributeError):
        headers = {}
    ident = str(headers.get("id") or hash(raw))
    seen = _tail_seen.get(queue)
    if seen is None or seen[0] != ident:
        seen = (ident, now)
        _tail_seen[queue] = seen
    age = now - seen[1]
    with suppress(KeyError, TypeError, ValueError):
        age = max(age, now - float(headers[SENT_AT_HEADER]))
    return max(age, 0.0)


def _sweep_gauges(sweep: Mapping[str, str], now: float) -> Iterable[Any]:
    from prometheus_client.core import GaugeMetricFamily

    from storage.keys import parse_timestamp

    yield GaugeMetricFamily(
        "notify_transient_letters_overdue",
        "Transient letters older than the alert age at the last sweep.",
        value=_int(sweep.get("waiting")),
    )
    age = 0.0
    if sweep.get("oldest"):
        try:
            age = max(now - parse_timestamp(sweep["oldest"], "oldest").timestamp(), 0.0)
        except Exception:
            age = 0.0
    yield GaugeMetricFamily(
        "notify_transient_letter_oldest_age_seconds",
        "Age now of the oldest overdue transient letter the last sweep found (0: none).",
        value=age,
    )
    try:
        swept = float(sweep.get("swept_at") or 0)
    except ValueError:
        swept = 0.0
    yield GaugeMetricFamily(
        "notify_transient_letters_sweep_timestamp_seconds",
        "Unix time of the last transient-letter sweep.",
        value=swept,
    )


@signals.task_postrun.connect
def _record_transient_sweep(task: Any = None, retval: Any = None, **_: Any) -> None:
    # The hourly sweep's findings, kept in Redis for beat's exporter (one HSET an hour; always
    # on, because the worker running the sweep need not be the process that serves metrics).
    if getattr(task, "name", None) != queues.LETTERS_SWEEP_TRANSIENT:
        return
    if not isinstance(retval, dict) or retval.get("status") != "ok":
        return
    from worker.runtime.redis_state import get_redis
    from worker.runtime.settings import get_worker_settings

    try:
        r = get_redis()
        with r.pipeline() as pipe:
            pipe.hset(
                TRANSIENT_SWEEP_KEY,
                mapping={
                    "waiting": _int(retval.get("waiting")),
                    "oldest": retval.get("oldest") or "",
                    "alert_hours": _int(retval.get("alert_hours")),
                    "swept_at": round(time.time(), 3),
                },
            )
            pipe.expire(TRANSIENT_SWEEP_KEY, get_worker_settings().state_ttl_seconds)
            pipe.execute()
    except Exception as error:  # metrics must never fail a task
        logger.warning("could not record the transient-letter sweep: %s", type(error).__name__)
