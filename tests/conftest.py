"""The test rig: real parts wherever a test needs them.

* ``mock_s3`` — in-process moto (``mock_aws``), buckets created: fast unit tests only.
* ``s3`` — moto's server over real HTTP (``ThreadedMotoServer``), reset and re-created per test.
* Redis — a private, non-persistent ``redis-server`` on a free port for the whole session
  (``NOTIFY_TEST_REDIS_URL`` overrides; without a redis-server binary, DB 12 of ``REDIS_URL``).
* ``celery_worker`` — a real worker in a thread (solo pool) consuming every queue.
* ``prefork_worker`` — ``notify-worker worker`` as a prefork subprocess, for crash tests: the
  solo pool enforces neither time limits nor reject-on-worker-lost.
* ``private_redis_url`` — a redis-server of the test's own, for tests that read whole databases.

Each area's fixtures live in ``tests/<area>_fixtures.py`` (and the fault proxy's in
``tests/faults.py``), registered below through ``pytest_plugins``: use them by name.

Nothing here uses ``task_always_eager``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

# Settings are read from the environment on first use: fix it before any project import.
for _name in list(os.environ):
    if _name.startswith(("S3_BUCKET_", "NOTIFY_", "AWS_")) or _name in ("S3_ENDPOINT_URL",):
        del os.environ[_name]
os.environ.update(
    {
        "NOTIFY_ENVIRONMENT": "test",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        # moto enforces S3's 5 MiB part floor unless told otherwise; tests use small parts.
        "S3_UPLOAD_PART_MIN_SIZE": "1024",
    }
)

from worker.local.servers import LocalRedis, redis_answers, start_redis_server  # noqa: E402

# Each area's fixtures, available to every test module without importing them.
pytest_plugins = [
    # Modules other fixture modules import come first, so pytest rewrites their asserts.
    "tests.reliability_fixtures",
    "tests.s3_fixtures",
    "tests.faults",
    "tests.csv_fixtures",
    "tests.letters_fixtures",
    "tests.reports_fixtures",
    "tests.cleanup_fixtures",
    "tests.db_fixtures",
    "tests.beat_fixtures",
    "tests.ops_fixtures",
    "tests.package_fixtures",
]

DATA = Path(__file__).parent / "data"
_redis: LocalRedis | None = None


def _test_redis_url() -> str:
    global _redis
    explicit = os.environ.get("NOTIFY_TEST_REDIS_URL")
    if explicit and not _xdist_workers():
        return explicit
    if shutil.which("redis-server"):
        _redis = start_redis_server()
        return _redis.url
    if _xdist_workers():
        # Parallel workers each need a whole Redis: they read queue lengths and flush DBs.
        raise pytest.UsageError(
            "pytest -n: each worker starts a private redis-server, and none is installed "
            "(Debian/Ubuntu: apt-get install redis-server). Or run the tests without -n."
        )
    if explicit:
        return explicit
    fallback = "redis://127.0.0.1:6379/12"
    if not redis_answers(fallback):
        raise pytest.UsageError("No redis-server to start and none answers at 127.0.0.1:6379.")
    return fallback


def _xdist_workers() -> int:
    """How many xdist workers run the tests (0: none, pytest runs them itself)."""
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)


def _xdist_controller(config: pytest.Config) -> bool:
    """The process that hands tests to xdist workers and runs none itself."""
    return bool(getattr(config.option, "numprocesses", None)) and not os.environ.get(
        "PYTEST_XDIST_WORKER"
    )


def pytest_configure(config: pytest.Config) -> None:
    if not _xdist_controller(config):
        os.environ["REDIS_URL"] = _test_redis_url()


# Parallel runs (make test: pytest -n 3 --dist loadgroup --no-loadscope-reorder). Every shared
# resource is per worker already (its own redis-server, moto server, tmp dirs; a PostgreSQL
# database per module; free ports), so a module is a work unit of its own, as with
# --dist loadfile: its module fixtures are made once. Exceptions, grouped by module name:
XDIST_GROUPS = {
    # CPU-heavy and timing-sensitive (SIGKILLs, failovers, partitions, lease expiry): one after
    # another on one worker, never two of them at once.
    "integration/test_redis_failover": "serial",
    "integration/test_postgres_sink": "serial",
    "integration/test_partition": "serial",
    "integration/test_task_leases": "serial",
}
# The longest work units go first, so that no worker is handed one near the end (measured:
# serial ~5 min, the TLS/Sentinel tests ~2.5, the packages' clean venvs and demo ~2, ...).
XDIST_FIRST = [
    "serial",
    "integration/test_redis_tls",
    "packages",
    "integration/test_security",
    "integration/test_csv_batches",
    "integration/test_beat",
    "integration/test_health",
    "integration/test_faults_reports",
    "integration/test_crash_reports",
    "integration/test_csv_fairness",
    "integration/test_faults_letters",
    "integration/test_cleanup_kill",
    "integration/test_redis_state_store",
]


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            module = f"{item.path.parent.name}/{item.path.stem}"  # unit/ and integration/
            item.add_marker(pytest.mark.xdist_group(XDIST_GROUPS.get(module, module)))

    def rank(item: pytest.Item) -> int:
        group = item.get_closest_marker("xdist_group").args[0]
        return XDIST_FIRST.index(group) if group in XDIST_FIRST else len(XDIST_FIRST)

    items.sort(key=rank)  # stable: each group keeps its own order


def pytest_unconfigure(config: pytest.Config) -> None:
    import sys
    from contextlib import suppress

    if "worker.runtime.app" in sys.modules:
        # Let results still pending unsubscribe while Redis is up, then close the backend's
        # pub/sub: otherwise its reconnect loop spins for 20 s after Redis has gone.
        import gc

        gc.collect()
        with suppress(Exception):
            consumer = sys.modules["worker.runtime.app"].app.backend.result_consumer
            consumer.stop()
            consumer.cancel_for = lambda *args, **kwargs: None
    if _redis is not None:
        _redis.stop()


def _reload() -> None:
    from storage.settings import reload_settings
    from worker.runtime.redis_state import reset_redis
    from worker.runtime.settings import reload_worker_settings

    reload_worker_settings()
    reload_settings()
    reset_redis()


@pytest.fixture
def private_redis_url() -> Iterator[str]:
    """A redis-server of the test's own (DB 0, empty): for tests that read whole databases
    (queue lengths, beat schedules) and so cannot share the session's Redis."""
    server = start_redis_server()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_client():
    """The project's Redis, with every ``notify:`` key removed before and after the test."""
    from worker.runtime.redis_state import get_redis

    client = get_redis()

    def wipe() -> None:
        keys = list(client.scan_iter("notify:*", count=1000))
        if keys:
            client.delete(*keys)

    wipe()
    yield client
    wipe()


@pytest.fixture
def mock_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """In-process moto with every registry bucket created (unit tests only)."""
    from moto import mock_aws

    from storage import admin
    from storage.client import get_client

    monkeypatch.delenv("S3_ENDPOINT_URL", raising=False)
    with mock_aws():
        _reload()
        # In-process moto applies a bucket policy's Deny without its conditions.
        admin.create_buckets(deny_policy=False)
        yield get_client()
    _reload()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server over real HTTP for the whole session."""
    from worker.local.servers import embedded_s3

    with embedded_s3() as endpoint:
        os.environ["S3_ENDPOINT_URL"] = endpoint
        _reload()
        yield endpoint
        os.environ.pop("S3_ENDPOINT_URL", None)
        _reload()


SSE_AUDIT_MAX_OBJECTS = 500  # per bucket; keeps teardown quick after bulk tests


def assert_every_object_encrypted(client: object) -> None:
    """Every object in every registry bucket is encrypted as configured: AES256, or with
    NOTIFY_S3_SSE=aws:kms that key (buckets have no default encryption here)."""
    from storage.settings import get_settings

    expected = {
        k: v
        for k, v in get_settings().sse_params().items()
        if k in ("ServerSideEncryption", "SSEKMSKeyId")
    }
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    for name in get_settings().bucket_names.values():
        if name not in existing:
            continue  # a test deleted it on purpose
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=name)
        checked = 0
        for page in pages:
            for obj in page.get("Contents", []):
                head = client.head_object(Bucket=name, Key=obj["Key"])
                found = {k: head.get(k) for k in expected}
                assert found == expected, (
                    f"s3://{name}/{obj['Key']} was written without ServerSideEncryption as "
                    f"configured: expected {expected}, found {found}"
                )
                checked += 1
                if checked >= SSE_AUDIT_MAX_OBJECTS:
                    break
            if checked >= SSE_AUDIT_MAX_OBJECTS:
                break


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A clean moto server (reset) with every registry bucket created; yields the client.

    The buckets' default encryption is removed again (moto would apply it to any write), so
    the teardown check catches a write that forgot ``ServerSideEncryption=AES256``.
    """
    from tests.reliability_fixtures import fresh_s3

    monkeypatch.setenv("S3_ENDPOINT_URL", moto_endpoint)
    _reload()
    client = fresh_s3(moto_endpoint)
    yield client
    assert_every_object_encrypted(client)


@pytest.fixture(scope="session")
def celery_app():
    from worker.runtime.app import app

    app.loader.import_default_modules()
    return app


@pytest.fixture(scope="session")
def celery_worker(celery_app, moto_endpoint: str):
    """A real worker (solo pool, in a thread) consuming every queue, for the whole session."""
    import celery.contrib.testing.tasks  # noqa: F401  (registers celery.ping)
    from celery.contrib.testing.worker import start_worker

    from worker.runtime import queues
    from worker.runtime.settings import get_worker_settings

    names = queues.all_queues(get_worker_settings().row_sink_queue)
    with start_worker(
        celery_app,
        pool="solo",
        concurrency=1,
        queues=names,
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=30,
    ) as worker:
        yield worker


def worker_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    return env


@pytest.fixture
def prefork_worker(tmp_path: Path, moto_endpoint: str) -> Iterator[Callable[..., object]]:
    """Factory: start ``notify-worker worker`` (prefork) subprocesses; all stopped at the end."""
    from worker.local.stack import start_worker_process

    started = []

    def start(
        concurrency: int = 2,
        queues: str | None = None,
        extra_args: Sequence[str] = (),
        **env: str,
    ):
        log_path = tmp_path / f"worker-{len(started) + 1}.log"
        handle = start_worker_process(
            worker_env(S3_ENDPOINT_URL=moto_endpoint, **env),
            log_path,
            concurrency=concurrency,
            queues=queues,
            extra_args=extra_args,
        )
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()
