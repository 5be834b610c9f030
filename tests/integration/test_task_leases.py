"""A worker machine dies (its whole process group SIGKILLed, nothing restarted): its letter move,
report or cleanup sweep runs again on another worker within the stale period plus one
reconcile pass, long before Redis's visibility timeout (one hour here, the default), and the
effect is that of one run.

Each test: worker A (its own process group) takes the task and is killed mid-way; worker B
consumes the same private queue; the reconciler runs every second in this process (as beat
would, with a shorter period); ``NOTIFY_JOB_STALE_SECONDS`` is 3.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.cleanup_fixtures import SERVICE as CLEANUP_SERVICE
from tests.cleanup_fixtures import audit_lines, new_id, seed
from tests.cleanup_fixtures import keys_in as cleanup_keys
from tests.csv_fixtures import worker_settings
from tests.letters_fixtures import DEST_KEY, exists, keys_in, letters_bucket, put_letter, read
from tests.letters_fixtures import transient_bucket as transient
from tests.reliability_fixtures import reconciling, wait_for
from tests.reports_fixtures import (
    SERVICE,
    pending_uploads,
    read_report,
)
from worker.local.stack import WorkerProcess
from worker.runtime import leases, queues

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STALE_SECONDS = 3
RECONCILE_EVERY = 1.0
# Kill to result: the stale period, one reconcile pass, a worker start and the task itself.
# Redis alone would take the visibility timeout (3,600 s).
RECOVERY_BOUND_SECONDS = 30


@pytest.fixture
def short_stale(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with worker_settings(monkeypatch, NOTIFY_JOB_STALE_SECONDS=str(STALE_SECONDS)):
        yield


@pytest.fixture
def hosts(
    worker_hosts: Callable[..., WorkerProcess], moto_endpoint: str, short_stale: None
) -> Callable[..., WorkerProcess]:
    """``start(queue, extra_args=(), **env)``: a prefork worker leading its own process group."""
    numbers = itertools.count(1)

    def start(queue: str, extra_args: tuple[str, ...] = (), **overrides: str) -> WorkerProcess:
        return worker_hosts(
            f"host{next(numbers)}",
            queue,
            extra_args=extra_args,
            S3_ENDPOINT_URL=moto_endpoint,
            NOTIFY_JOB_STALE_SECONDS=str(STALE_SECONDS),
            **overrides,
        )

    return start


def private_queue(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def send(name: str, kwargs: dict[str, Any], queue: str, **options: Any) -> Any:
    from worker.runtime.app import app

    return app.send_task(name, kwargs=kwargs, queue=queue, **options)


def assert_lease_superseded(redis_client: Any, task_id: str) -> None:
    # The re-sent delivery finished: its worker releases the lease on its next beat.
    wait_for(
        lambda: redis_client.zscore(leases.LIVE_KEY, task_id) is None, 10, what="the lease released"
    )
    record = redis_client.hgetall(leases.record_key(task_id))
    assert record["generation"] == "1", record  # kept: older deliveries are recognised
    assert "tag" not in record


def replay_original(
    result: Any, name: str, kwargs: dict[str, Any], queue: str, worker: WorkerProcess
) -> None:
    """The dead machine's own message (generation 0, same id), as Redis hands it out again
    once the visibility timeout has passed: it must be dropped, not run, and must leave the
    re-sent run's result in place."""
    before = result.get(timeout=5)
    send(name, kwargs, queue, task_id=result.id)
    wait_for(
        lambda: "an older delivery of a re-sent task; dropped" in worker.log(),
        30,
        what="the old delivery to be dropped",
    )
    from worker.runtime.app import app

    assert app.AsyncResult(result.id).get(timeout=5) == before


def test_letter_move_of_a_dead_machine_runs_again_within_minutes(hosts, s3, redis_client, tmp_path):
    letter = put_letter(s3)
    marker = tmp_path / "paused"
    queue = private_queue("lease-letters")
    first = hosts(
        queue,
        extra_args=("--include=tests.plugins.letters_pause",),  # pauses after the copy
        LETTERS_PAUSE_MARKER=str(marker),
        LETTERS_PAUSE_SECONDS="120",
    )
    result = send(queues.LETTERS_MOVE_TRANSIENT, letter.args(), queue)
    wait_for(marker.exists, 60, what="the move to pause between copy and delete")
    assert exists(s3, letters_bucket(), DEST_KEY) and exists(s3, transient(), letter.key)
    assert redis_client.zscore(leases.LIVE_KEY, result.id) is not None  # leased, beating

    first.kill_group()  # the machine goes: parent and pool child in the same instant
    killed = time.monotonic()
    second = hosts(queue)
    with reconciling(RECONCILE_EVERY) as passes:
        outcome = result.get(timeout=60)
    elapsed = time.monotonic() - killed
    print(f"kill to result: {elapsed:.1f}s")

    assert outcome["status"] == "ok", outcome
    assert outcome["already_moved"] is True  # the copy was there; the re-run finished the move
    assert elapsed < RECOVERY_BOUND_SECONDS, elapsed
    assert sum(p["tasks_resent"] for p in passes) == 1
    assert keys_in(s3, letters_bucket()) == [DEST_KEY]
    assert read(s3, letters_bucket(), DEST_KEY) == letter.body
    assert not exists(s3, transient(), letter.key)
    assert_lease_superseded(redis_client, result.id)

    replay_original(result, queues.LETTERS_MOVE_TRANSIENT, letter.args(), queue, second)
    assert keys_in(s3, letters_bucket()) == [DEST_KEY]


@pytest.mark.usefixtures("report_plugins")
def test_report_of_a_dead_machine_is_written_once_by_another(hosts, s3, redis_client):
    queue = private_queue("lease-reports")
    first = hosts(queue)
    request = str(uuid.uuid4())
    key = f"slow_report/{request}.csv"
    kwargs = {
        "report_request_id": request,
        "service_id": SERVICE,
        "kind": "slow",
        "params": {"rows": 300, "delay": 0.015},
    }
    result = send(queues.REPORTS_GENERATE, kwargs, queue)
    wait_for(lambda: key in pending_uploads(), 30, what="the first parts to be uploaded")
    first.kill_group()
    killed = time.monotonic()
    second = hosts(queue)
    with reconciling(RECONCILE_EVERY) as passes:
        value = result.get(timeout=60)
    elapsed = time.monotonic() - killed
    print(f"kill to result: {elapsed:.1f}s")

    assert value["status"] == "ok", value
    assert value["rows"] == 300
    assert elapsed < RECOVERY_BOUND_SECONDS, elapsed
    assert sum(p["tasks_resent"] for p in passes) == 1
    records = read_report(key)
    assert [int(r[0]) for r in records[1:]] == list(range(1, 301))
    assert_lease_superseded(redis_client, result.id)

    replay_original(result, queues.REPORTS_GENERATE, kwargs, queue, second)
    assert len(read_report(key)) == 301


def test_cleanup_sweep_of_a_dead_machine_is_finished_by_another(hosts, s3, redis_client):
    queue = private_queue("lease-cleanup")
    slow_check = {
        "NOTIFY_REFERENCE_CHECK": "tests.plugins.reference_check:check",
        "FAKE_REFERENCE_CHECK_DELAY": "0.7",
    }
    first = hosts(queue, **slow_check)
    keys = set(
        seed("email-attachments", (f"{CLEANUP_SERVICE}/{new_id()}" for _ in range(3000)), 30)
    )
    kwargs = {"bucket": "email-attachments", "dry_run": False}
    result = send(queues.CLEANUP_SWEEP, kwargs, queue)
    wait_for(lambda: len(cleanup_keys("email-attachments")) <= 2000, 60, what="the first batch")
    first.kill_group()
    killed = time.monotonic()
    assert len(cleanup_keys("email-attachments")) >= 1000  # killed half-way
    hosts(queue, **slow_check)
    with reconciling(RECONCILE_EVERY) as passes:
        value = result.get(timeout=90)
    elapsed = time.monotonic() - killed
    print(f"kill to result: {elapsed:.1f}s")

    assert value["status"] == "ok", value
    assert 0 < value["deleted"] <= 2000
    assert elapsed < RECOVERY_BOUND_SECONDS + 5, elapsed  # the re-run's reference checks: ~2 s
    assert sum(p["tasks_resent"] for p in passes) == 1
    assert cleanup_keys("email-attachments") == set()
    lines = audit_lines()
    assert {line["key"] for line in lines} == keys  # every deletion audited
    # A batch is audited before it is deleted: one cut between the two (the kill landing after
    # the second batch's audit) is audited again by the re-run, never more than that batch.
    assert len(lines) - len(keys) in (0, 1000), len(lines)
    assert_lease_superseded(redis_client, result.id)
