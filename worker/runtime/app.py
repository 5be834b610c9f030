"""The Celery app. Tasks are plain functions in ``tasks/``; this module only wires them up."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

# broker_connections patches kombu's event-loop connections; metrics and tracing connect signals
from worker.runtime import broker_connections, logs, metrics, serialization, tracing  # noqa: F401
from worker.runtime.health import LivenessHeartbeat
from worker.runtime.settings import get_worker_settings

TASK_MODULES = [
    "tasks.reconcile",
    "tasks.csv_batches.tasks",
    "tasks.csv_batches.replay",
    "tasks.letters.tasks",
    "tasks.reports.tasks",
    "tasks.cleanup.tasks",
]

# Message bodies decode about twice as fast (msgspec), to the same values (serialization.py).
serialization.install()
app = Celery("notify_worker", task_cls="worker.runtime.base:NotifyTask", include=TASK_MODULES)
app.config_from_object("celeryconfig")
# Each worker's consumer loop keeps its liveness file fresh (``notify-worker health --liveness``).
app.steps["consumer"].add(LivenessHeartbeat)
# The app of every thread of the process (Celery's own default is per thread): cores that send
# tasks use ``celery.current_app`` unless given an app, and must find this one in pool threads.
app.set_default()


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    # Our own handler (text or JSON, with ids); Celery leaves logging alone when this is hooked.
    settings = get_worker_settings()
    logs.configure(settings.log_level, settings.log_format)


@signals.worker_process_init.connect
def _after_fork(**_: Any) -> None:
    # Clients made in the parent must not be shared with prefork children.
    from storage.client import reset_client
    from worker.runtime.redis_state import reset_redis

    reset_client()
    reset_redis()
    # Make the child's S3 client now (~0.2 s) rather than in its first task's time.
    from contextlib import suppress

    from storage.client import get_client

    with suppress(Exception):  # a broken setup is reported by the first task that needs S3
        get_client()


@signals.worker_init.connect
def _check_configuration(**_: Any) -> None:
    # Fail at start-up, naming the variable, rather than on the first task. SystemExit, because
    # Celery logs and swallows ordinary exceptions raised by signal handlers.
    from storage.errors import ConfigurationError
    from storage.settings import get_settings
    from worker.runtime import redis_urls

    try:
        get_settings()
        # Every Redis once: a wrong CA, password or sentinel stops the worker here, with the
        # URL's host named, rather than in an endless reconnect loop.
        redis_urls.check(get_worker_settings())
    except ConfigurationError as error:
        logging.getLogger(__name__).critical("cannot start: %s", error.message)
        raise SystemExit(2) from error


@signals.beat_init.connect
def _check_beat_configuration(**kwargs: Any) -> None:
    _check_configuration(**kwargs)
