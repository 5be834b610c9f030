"""Helpers shared by the reliability and security tests.

Its fixtures are registered for every test in tests/conftest.py (``pytest_plugins``).

* ``rel_workers`` — a factory of prefork ``notify-worker worker`` subprocesses like the rig's
  ``prefork_worker``, but with any environment (``S3_ENDPOINT_URL`` pointing at the fault
  proxy, a password in ``REDIS_URL``, …) and extra celery arguments (``--include``);
* ``private_queue()`` — a queue name only the test's own worker consumes: the session's thread
  worker (``celery_worker``) consumes every standard queue and would otherwise steal the tasks a
  crash test means to kill;
* ``wait_for(predicate)`` — poll with a deadline.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from worker.local.stack import WorkerProcess, start_worker_process

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests.* modules are imported by dotted path
    sys.path.insert(0, str(ROOT))


def private_queue(prefix: str = "rel") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def wait_for(
    predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def start_worker(
    env: dict[str, str],
    log_path: Path,
    *,
    concurrency: int = 1,
    queues: str | None = None,
    extra_args: Sequence[str] = (),
    ready_timeout: float = 60,
) -> WorkerProcess:
    """A prefork worker with this module's host name prefix (``worker.local.stack`` does
    the rest)."""
    return start_worker_process(
        env,
        log_path,
        concurrency=concurrency,
        queues=queues,
        hostname=f"rel-{os.getpid()}-{time.monotonic_ns()}@%h",
        extra_args=extra_args,
        ready_timeout=ready_timeout,
    )


@pytest.fixture(name="rel_workers")
def rel_workers_fixture(tmp_path: Path, moto_endpoint: str) -> Iterator[Callable[..., Any]]:
    """Factory ``start(concurrency=1, queues=None, extra_args=(), s3_endpoint=None, **env)``;
    every worker it started is stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(
        concurrency: int = 1,
        queues: str | None = None,
        extra_args: Sequence[str] = (),
        s3_endpoint: str | None = None,
        **overrides: str,
    ) -> WorkerProcess:
        env = dict(os.environ)
        env["S3_ENDPOINT_URL"] = s3_endpoint or moto_endpoint
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env.update(overrides)
        log_path = tmp_path / f"rel-worker-{len(started) + 1}.log"
        handle = start_worker(
            env, log_path, concurrency=concurrency, queues=queues, extra_args=extra_args
        )
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


def fresh_s3(moto_endpoint: str) -> Any:
    """A clean moto server with every registry bucket and no default encryption (moto would
    apply it to any write, and the teardown audit must catch a write that forgot its
    encryption). The rig's ``s3`` fixture uses it; so do module-scoped fixtures. Returns this
    process's client."""
    import requests

    from storage import admin
    from storage.client import get_client
    from storage.settings import get_settings, reload_settings

    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    reload_settings()
    admin.create_buckets()
    client = get_client()
    for name in get_settings().bucket_names.values():
        client.delete_bucket_encryption(Bucket=name)
    return client


def unacked_on(client: Any, queue: str) -> int:
    """How many deliveries from ``queue`` the broker still holds unacknowledged. A test counts
    its own queue's: the session's Redis may still hold a delivery an earlier test's killed
    worker took (until its visibility timeout), and under xdist any module may run before."""
    import json

    # kombu keeps each as JSON [message, exchange, routing key] in the "unacked" hash.
    return sum(1 for raw in client.hvals("unacked") if json.loads(raw)[2] == queue)


def redis_text(client: Any) -> list[str]:
    """Every key name and value in one Redis database, as text (small databases only): what a
    test scans for recipients or secrets that must never be stored."""
    found: list[str] = []
    for name in client.scan_iter(count=1000):
        found.append(name.decode(errors="replace") if isinstance(name, bytes) else name)
        kind = client.type(name)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "string":
            values: list[Any] = [client.get(name)]
        elif kind == "hash":
            values = [v for pair in client.hgetall(name).items() for v in pair]
        elif kind == "list":
            values = client.lrange(name, 0, -1)
        elif kind == "set":
            values = list(client.smembers(name))
        elif kind == "zset":
            values = [m for m, _ in client.zrange(name, 0, -1, withscores=True)]
        elif kind == "stream":
            values = [str(entry) for entry in client.xrange(name)]
        else:
            values = []
        found.extend(
            v.decode(errors="replace") if isinstance(v, bytes) else str(v)
            for v in values
            if v is not None
        )
    return found


def audit_sse(request: pytest.FixtureRequest, client: Any) -> None:
    """The ``s3`` fixture's teardown audit (tests/conftest.py): every object carries AES256."""
    for plugin in request.config.pluginmanager.get_plugins():
        audit = getattr(plugin, "assert_every_object_encrypted", None)
        if audit is not None:
            audit(client)
            return
    pytest.fail("tests/conftest.py no longer has assert_every_object_encrypted")


def wipe_notify_state() -> None:
    """Remove every ``notify:`` key (what the ``redis_client`` fixture does per test)."""
    from worker.runtime.redis_state import get_redis

    r = get_redis()
    keys = list(r.scan_iter("notify:*", count=1000))
    if keys:
        r.delete(*keys)


@pytest.fixture
def worker_hosts(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory ``start(name, queues, *, extra_args=(), **env)``: a prefork worker "host" leading
    its own process group (so a test can kill the whole machine), with its own host name; ``env``
    on top of this process's environment."""
    started: list[WorkerProcess] = []

    def start(
        name: str, queues: str, *, extra_args: Sequence[str] = (), **env: str
    ) -> WorkerProcess:
        handle = start_worker_process(
            {**os.environ, "PYTHONPATH": str(ROOT), **env},
            tmp_path / f"{name}.log",
            concurrency=1,
            queues=queues,
            hostname=f"{name}-{uuid.uuid4().hex[:6]}@%h",
            extra_args=tuple(extra_args),
            process_group=True,
        )
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop(timeout=30)


@contextmanager
def reconciling(every: float = 1.0) -> Iterator[list[dict[str, Any]]]:
    """The reconciler, as beat would run it, in a thread of this process; yields the passes'
    results (an error as ``{"error": ...}``)."""
    from tasks.reconcile import reconcile

    passes: list[dict[str, Any]] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                passes.append(reconcile(rebuild=False))
            except Exception as error:
                passes.append({"error": repr(error)})
            stop.wait(every)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield passes
    finally:
        stop.set()
        thread.join(30)
