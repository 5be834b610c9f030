"""Redis Sentinel failover with real processes: a primary, a replica and three sentinels
(``tests/redis_fixtures.SentinelTopology``), prefork workers and beat connected through the
sentinels (``sentinel://`` URLs, a password on the data servers and another on the sentinels).
The primary is SIGKILLed in the middle of the work; a sentinel promotes the replica and
everything reconnects by itself.

* a 200,000-row CSV job: every valid row ends stored exactly once (the built-in sink's hash on
  the new primary), the job ends ``finished`` with a clean run's counters. Replication is
  asynchronous, so the last writes before the kill may be missing on the new primary: the test
  measures what the new primary had lost (checkpoint, stored rows) and what the reconciler
  re-drove (resumed runs, re-sends), and prints it;
* 300 letter moves: every letter moved exactly once (sources gone, each destination present
  once with the source's bytes), however many deliveries ran twice.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.csv_fixtures import SERVICE_ID, head, job_kwargs, upload
from tests.redis_fixtures import SentinelTopology, cli, project_env, start_beat
from worker.runtime import redis_urls
from worker.runtime.settings import WorkerSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]

ROWS, BAD_EVERY = 200_000, 50
VALID = ROWS - ROWS // BAD_EVERY
LETTERS = 300
ENV = {
    "NOTIFY_JOB_STALE_SECONDS": "8",
    "NOTIFY_RECONCILE_INTERVAL_SECONDS": "4",
    # Generous: on a loaded 2-core machine a 200,000-row pass can take minutes, and a pass cut
    # by its time limit only slows the test down (the reconciler owns the recovery here).
    "NOTIFY_VISIBILITY_TIMEOUT_SECONDS": "900",
    "NOTIFY_TASK_TIME_LIMIT_SECONDS": "600",
    "NOTIFY_CSV_MAX_ROWS": str(ROWS),
}
RESULTS = Path(os.environ.get("NOTIFY_FAILOVER_RESULTS", "/tmp/notify-failover-results.jsonl"))


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[SentinelTopology]:
    started = SentinelTopology(tmp_path / "redis").start()
    yield started
    started.stop()


def settings_for(env: dict[str, str]) -> WorkerSettings:
    return WorkerSettings.from_env(env)


def state_client(env: dict[str, str]) -> redis.Redis:
    """A client of the project's kind: finds the master through the sentinels, after a
    failover too."""
    return redis_urls.make_client(env["REDIS_URL"], settings_for(env), socket_timeout=5)


def patiently(read: Callable[[], Any]) -> Any:
    """``read()``, or None while Redis is failing over."""
    try:
        return read()
    except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError):
        return None


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = patiently(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def record(name: str, figures: dict[str, Any]) -> None:
    line = json.dumps({"test": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ"), **figures})
    print(f"\nFAILOVER {line}")
    with RESULTS.open("a") as out:
        out.write(line + "\n")


def big_csv() -> str:
    # Distinct valid numbers (07700 9xxxxx repeats every 100,000 rows; that is fine for the
    # sink, keyed by notification id, but keeps the file realistic).
    lines = ["phone number,name"]
    for i in range(1, ROWS + 1):
        phone = "12345" if i % BAD_EVERY == 0 else f"07700 9{i % 100000:05d}"
        lines.append(f"{phone},Person {i}")
    return "\r\n".join(lines) + "\r\n"


def test_primary_killed_mid_csv_job_every_row_stored_once(
    s3, topology, rel_workers, tmp_path, moto_endpoint
):
    env = project_env(dict(os.environ), **topology.env(), **ENV, S3_ENDPOINT_URL=moto_endpoint)
    overrides = {**topology.env(), **ENV}
    workers = [rel_workers(concurrency=2, **overrides) for _ in range(2)]
    beat = start_beat(env, tmp_path / "beat.log")
    state = state_client(env)
    try:
        wait_for(lambda: state.get("notify:beat:lock"), 60, "beat's lock")
        upload_id = upload(s3, big_csv())
        job = f"notify:job:{upload_id}"
        sink = f"notify:notifications:{upload_id}"
        sent = cli(env, "enqueue", "notify.csv.process_batch", json.dumps(job_kwargs(upload_id)))
        assert sent.returncode == 0, sent.stderr

        def mid_job() -> bool:
            fields = state.hmget(job, "status", "checkpoint")
            return fields[0] == "running" and int(fields[1] or 0) >= ROWS // 5

        wait_for(mid_job, 120, "the job to be a fifth through", interval=0.02)
        primary = topology.primary()
        at_kill = state.hgetall(job)
        stored_at_kill = state.hlen(sink)
        killed = time.monotonic()
        topology.kill_primary()
        new_port = topology.wait_for_promotion(primary.port)
        promoted_after = time.monotonic() - killed
        survivor = topology.server(new_port)
        after = survivor.hgetall(job)
        stored_after = survivor.hlen(sink)

        wait_for(
            lambda: state.hget(job, "status") == "finished" and state.hlen(sink) >= VALID,
            600,
            f"the job to finish with every row stored ({after=}, {stored_after=})",
            interval=0.5,
        )
        # Settle: a re-send still running would add nothing (same ids), but let it end.
        wait_for(lambda: "resend" not in state.hgetall(job), 300, "any re-send to end")
        finished_after = time.monotonic() - killed

        stored = state.hgetall(sink)
        numbers = [json.loads(v)["row_number"] for v in stored.values()]
        expected = {n for n in range(1, ROWS + 1) if n % BAD_EVERY}
        assert len(numbers) == len(set(numbers)) == VALID  # each row once, none twice
        assert set(numbers) == expected
        final = state.hgetall(job)
        assert (final["status"], int(final["dispatched"]), int(final["invalid"])) == (
            "finished",
            VALID,
            ROWS // BAD_EVERY,
        )
        meta = head(s3, upload_id, service_id=SERVICE_ID)["Metadata"]
        assert meta["processing_status"] == "finished"
        assert (meta["processing_rows_total"], meta["processing_rows_dispatched"]) == (
            str(ROWS),
            str(VALID),
        )
        assert beat.process.poll() is None, beat.log()[-3000:]  # beat rode out the failover
        logs = "".join(w.log() for w in workers)
        assert topology.password not in logs + beat.log()
        assert topology.sentinel_password not in logs + beat.log()
        record(
            "csv",
            {
                "promoted_after_s": round(promoted_after, 1),
                "finished_after_s": round(finished_after, 1),
                "checkpoint_at_kill": int(at_kill.get("checkpoint") or 0),
                "checkpoint_on_new_primary": int(after.get("checkpoint") or 0),
                "stored_at_kill": stored_at_kill,
                "stored_on_new_primary": stored_after,
                "lost_stored_rows": max(stored_at_kill - stored_after, 0),
                "job_state_on_new_primary": after.get("status"),
                "runs": int(final.get("runs") or 0),
                "resends": int(final.get("resends") or 0),
                "resumed_log_lines": logs.count("resuming after row"),
                "resend_log_lines": logs.count("re-sending the rows of finished job"),
                # What the sink was missing when the reconciler re-sent the rows: batches lost
                # in flight (deliveries whose acknowledgement or store the failover cut).
                "rows_missing_at_resend": [
                    int(d) - int(s)
                    for d, s in re.findall(r"(\d+) rows dispatched, (\d+) stored", logs)
                ],
                "rows_stored": len(numbers),
            },
        )
    finally:
        beat.stop()


def sentinel_app(env: dict[str, str]):
    """A Celery app publishing through the sentinels (as the web app's client would)."""
    from celery import Celery

    settings = settings_for(env)
    target = redis_urls.parse(settings.redis_url)
    app = Celery("failover-test", broker=redis_urls.celery_url(target), set_as_current=False)
    app.conf.update(
        broker_transport_options=redis_urls.transport_options(target, settings),
        task_serializer="json",
        accept_content=["json"],
    )
    return app


LETTER_ENV = {
    **ENV,
    # Letter moves take well under a second: a short visibility timeout lets Redis hand out
    # again what the failover left unacknowledged within the test's patience.
    "NOTIFY_VISIBILITY_TIMEOUT_SECONDS": "20",
    "NOTIFY_TASK_TIME_LIMIT_SECONDS": "15",
}
QUIET_SECONDS = 40  # visibility timeout + kombu's 10 s restore sweep + margin


def test_primary_killed_mid_letter_moves_every_letter_moved_once(
    s3, topology, rel_workers, tmp_path, moto_endpoint
):
    """Every letter ends moved exactly once by the system itself. Deliveries in flight when the
    primary dies come back by themselves: kombu's restore of unacknowledged messages when the
    new primary has their ``unacked`` entry, else the task's lease, which the worker keeps
    (silent) when the failover made it forget the request, and which the reconciler re-sends
    after the stale period. The test counts how many the reconciler re-drove."""
    from storage.keys import letters_pdf_key
    from tests.letters_fixtures import (
        CREATED_AT,
        POSTAGE,
        letters_bucket,
        put_letter,
        read,
        transient_bucket,
    )
    from worker.runtime import queues

    env = project_env(
        dict(os.environ), **topology.env(), **LETTER_ENV, S3_ENDPOINT_URL=moto_endpoint
    )
    overrides = {**topology.env(), **LETTER_ENV}
    letters = [put_letter(s3) for _ in range(LETTERS)]
    references = [f"FAILOVER{i:04d}" for i in range(LETTERS)]
    arguments = [
        letter.args(reference=reference)
        for letter, reference in zip(letters, references, strict=True)
    ]
    app = sentinel_app(env)
    with app.producer_or_acquire() as producer:
        for kwargs in arguments:
            app.send_task(
                queues.LETTERS_MOVE_TRANSIENT,
                kwargs=kwargs,
                queue=queues.LETTERS,
                producer=producer,
            )
    app.close()
    primary = topology.primary()
    admin = topology.server(primary.port)
    assert admin.llen(queues.LETTERS) == LETTERS
    assert admin.execute_command("WAIT", 1, 5000) == 1  # the queue is on the replica too

    def moved() -> int:
        count = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=letters_bucket()):
            count += len(page.get("Contents", []))
        return count

    def sources_left() -> int:
        return int(s3.list_objects_v2(Bucket=transient_bucket()).get("KeyCount", 0))

    beat = start_beat(env, tmp_path / "beat.log")
    # The letters queue and the periodic one (the reconciler, which beat sends there).
    consumed = f"{queues.LETTERS},{queues.PERIODIC}"
    workers = [rel_workers(concurrency=2, queues=consumed, **overrides) for _ in range(2)]
    try:
        wait_for(lambda: moved() >= LETTERS // 3, 120, "a third of the letters", interval=0.05)
        at_kill = moved()
        killed = time.monotonic()
        topology.kill_primary()
        topology.wait_for_promotion(primary.port)
        promoted_after = time.monotonic() - killed

        # Let the system recover by itself until nothing has changed for QUIET_SECONDS.
        def progress() -> tuple[int, int]:
            return moved(), sources_left()

        last, last_change = progress(), time.monotonic()
        while last != (LETTERS, 0) and time.monotonic() - last_change < QUIET_SECONDS:
            time.sleep(1)
            now = progress()
            if now != last:
                last, last_change = now, time.monotonic()
            assert time.monotonic() - killed < 300, "the letters never settled"
        moved_count, left = last
        settled_after = time.monotonic() - killed
        # Nothing for the operator to do: no letter left unmoved, no source left behind.
        if (moved_count, left) != (LETTERS, 0):
            tail = "".join(w.log()[-4000:] for w in workers)
            pytest.fail(f"{moved_count} moved, {left} sources left, by themselves:\n{tail}")

        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=letters_bucket()):
            keys += [o["Key"] for o in page.get("Contents", [])]
        expected = {letters_pdf_key(r, POSTAGE, CREATED_AT) for r in references}
        assert len(keys) == len(set(keys)) == LETTERS and set(keys) == expected
        assert sources_left() == 0
        for letter, reference in zip(letters, references, strict=True):
            body = read(s3, letters_bucket(), letters_pdf_key(reference, POSTAGE, CREATED_AT))
            assert body == letter.body
        assert beat.process.poll() is None, beat.log()[-3000:]  # beat rode out the failover
        logs = "".join(w.log() for w in workers)
        assert topology.password not in logs and topology.sentinel_password not in logs
        redriven = set(re.findall(r"re-sent task (\S+) \(notify\.letters\.move_transient", logs))
        record(
            "letters",
            {
                "promoted_after_s": round(promoted_after, 1),
                "settled_after_s": round(settled_after, 1),
                "moved_at_kill": at_kill,
                "moved_by_themselves": moved_count,
                "redriven_by_reconciler": len(redriven),
                "leases_kept_for_reconciler": logs.count("its lease is kept for the reconciler"),
                "old_deliveries_dropped": logs.count("an older delivery of a re-sent task"),
                "moved_log_lines": logs.count("letter moved to the letters-PDF bucket"),
                "already_moved_log_lines": logs.count("letter already moved by an earlier run"),
            },
        )
    finally:
        beat.stop()
