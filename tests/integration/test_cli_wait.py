"""``--wait`` with no worker answering, or no Redis: a clear message and a distinct exit code
(5: no result in time, 6: Redis did not answer), never a traceback."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import redis

from tests.conftest import worker_env
from worker.cli.output import EXIT_NO_RESULT, EXIT_UNREACHABLE

pytestmark = pytest.mark.integration

SERVICE = str(uuid.uuid4())


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=worker_env(**env),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.fixture
def nobody_prefix(redis_client):
    """A queue prefix no worker consumes; its queues are removed afterwards."""
    prefix = f"nobody-{uuid.uuid4().hex[:8]}-"
    yield prefix
    broker = redis.Redis.from_url(worker_env()["REDIS_URL"])
    for name in broker.scan_iter(f"*{prefix}*"):
        broker.delete(name)


@pytest.mark.parametrize(
    ("args", "queue"),
    [
        (("enqueue", "notify.jobs.reconcile", "{}"), "periodic"),
        (("cleanup", "--bucket", "logo", "--enqueue"), "cleanup"),
        (("reports", "generate", "uploads", "--service-id", SERVICE, "--enqueue"), "reports"),
    ],
    ids=["enqueue", "cleanup", "reports"],
)
def test_no_worker_answering_ends_with_a_message_and_exit_code_5(nobody_prefix, args, queue):
    out = cli(*args, "--wait", "--timeout", "1", NOTIFY_QUEUE_PREFIX=nobody_prefix)
    assert out.returncode == EXIT_NO_RESULT, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert "no result after 1s: no worker has taken task" in out.stderr
    assert f"on queue {nobody_prefix}{queue}" in out.stderr
    # The message is still queued for a worker that comes later.
    broker = redis.Redis.from_url(worker_env()["REDIS_URL"])
    assert broker.llen(f"{nobody_prefix}{queue}") == 1


def test_no_redis_ends_with_a_message_and_exit_code_6_without_the_password():
    url = "redis://:hunter2secret@127.0.0.1:1/0"
    # (cleanup and reports send through the same helper; once is enough: ~10 s of retries)
    args = ("enqueue", "notify.jobs.reconcile", "{}", "--wait", "--timeout", "5")
    out = cli(*args, REDIS_URL=url)
    assert out.returncode == EXIT_UNREACHABLE, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert "did not answer" in out.stderr and "127.0.0.1:1" in out.stderr
    assert "hunter2secret" not in out.stdout + out.stderr


def test_a_bad_request_id_is_refused_before_sending(nobody_prefix):
    out = cli(
        "enqueue", "notify.jobs.reconcile", "{}", "--request-id", "a b",
        NOTIFY_QUEUE_PREFIX=nobody_prefix,
    )  # fmt: skip
    assert out.returncode == 2 and "--request-id" in out.stderr and "Traceback" not in out.stderr
    broker = redis.Redis.from_url(worker_env()["REDIS_URL"])
    assert broker.llen(f"{nobody_prefix}periodic") == 0
