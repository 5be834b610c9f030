"""Prefork workers killed with SIGKILL between the copy and the delete, and real concurrency.

The crash tests load the test plug-in ``tests.plugins.letters_pause`` into the worker: the first
move to finish its copy creates a marker file and sleeps before the delete; the test waits for
the marker, checks that the copy exists and the source is still there, and kills.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from tests.letters_fixtures import (
    DEST_KEY,
    SECRETS,
    exists,
    keys_in,
    letters_bucket,
    put_letter,
    read,
)
from tests.letters_fixtures import transient_bucket as transient
from worker.runtime import queues

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIMEOUT = 60
# tests/plugins/letters_pause.py (not imported here: it patches the letters core when loaded).
PAUSE_PLUGIN = "--include=tests.plugins.letters_pause"


def private_queue() -> str:
    """A queue only this test's prefork workers consume: the session's thread worker
    (``celery_worker``) consumes every standard queue and would race them for the message."""
    return f"test-letters-{uuid.uuid4().hex[:8]}"


def send(kwargs: dict, queue: str):
    from worker.runtime.app import app

    return app.send_task(queues.LETTERS_MOVE_TRANSIENT, kwargs=kwargs, queue=queue)


def wait_for(path: Path, timeout: float = TIMEOUT) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"{path.name} never appeared: the move did not reach the pause")


def assert_finished_once_by_the_redelivery(s3, letter, result) -> None:
    """The redelivered move found the copy made before the kill and finished: one letter at
    the destination, byte for byte, and the source gone."""
    outcome = result.get(timeout=TIMEOUT)
    assert outcome["status"] == "ok"
    assert outcome["already_moved"] is True
    assert keys_in(s3, letters_bucket()) == [DEST_KEY]
    assert read(s3, letters_bucket(), DEST_KEY) == letter.body
    assert not exists(s3, transient(), letter.key)


def paused_worker(prefork_worker, marker: Path, queue: str):
    """A one-process worker whose first move pauses between copy and delete."""
    env = {"LETTERS_PAUSE_MARKER": str(marker), "LETTERS_PAUSE_SECONDS": "120"}
    return prefork_worker(concurrency=1, queues=queue, extra_args=[PAUSE_PLUGIN], **env)


def test_pool_child_killed_between_copy_and_delete_is_redelivered_and_finishes_once(
    prefork_worker, s3, redis_client, tmp_path
):
    letter = put_letter(s3)
    marker = tmp_path / "paused"
    queue = private_queue()
    worker = paused_worker(prefork_worker, marker, queue)

    result = send(letter.args(), queue)
    wait_for(marker)
    assert exists(s3, letters_bucket(), DEST_KEY)  # copied...
    assert exists(s3, transient(), letter.key)  # ...not yet deleted
    children = worker.children()
    assert children
    for pid in children:
        os.kill(pid, signal.SIGKILL)  # the pool child dies mid-task

    # reject-on-worker-lost requeues the message; the new child finishes the move.
    assert_finished_once_by_the_redelivery(s3, letter, result)
    assert redis_client.get(f"notify:deliveries:{result.id}:0") == "2"
    log = worker.log()
    assert "pausing between copy and delete" in log
    for secret in SECRETS:  # the worker's own log lines carry ids, never the letter's content
        assert secret not in log


def test_whole_worker_killed_between_copy_and_delete_is_redelivered_by_redis(
    prefork_worker, s3, redis_client, tmp_path
):
    """The machine dies: nothing requeues the message, Redis hands it out again once its
    visibility timeout has passed (10 s for the second worker here)."""
    letter = put_letter(s3)
    marker = tmp_path / "paused"
    queue = private_queue()
    first = paused_worker(prefork_worker, marker, queue)

    result = send(letter.args(), queue)
    paused_at = wait_for(marker)
    assert exists(s3, letters_bucket(), DEST_KEY)
    first.kill()  # parent and child, SIGKILL

    # A worker restores unacked messages older than its visibility timeout when it starts.
    visibility = 10
    time.sleep(max(0.0, paused_at + visibility + 1 - time.monotonic()))
    prefork_worker(concurrency=1, queues=queue, NOTIFY_VISIBILITY_TIMEOUT_SECONDS=str(visibility))

    assert_finished_once_by_the_redelivery(s3, letter, result)


def test_two_pool_processes_moving_the_same_letters_at_once(prefork_worker, s3, redis_client):
    """Every letter enqueued twice at once on a two-process worker: each moved exactly once."""
    letters = [put_letter(s3) for _ in range(6)]
    queue = private_queue()
    prefork_worker(concurrency=2, queues=queue)
    created = [f"2024-07-15T10:00:{i:02d}Z" for i in range(len(letters))]
    sent = []
    for letter, created_at in zip(letters, created, strict=True):
        for _ in range(2):
            sent.append(send(letter.args(created_at=created_at), queue))

    outcomes = [r.get(timeout=TIMEOUT) for r in sent]

    assert [o["status"] for o in outcomes] == ["ok"] * len(sent)
    for index in range(len(letters)):
        pair = outcomes[2 * index : 2 * index + 2]
        assert pair[0]["destination_key"] == pair[1]["destination_key"]
        assert not all(o["already_moved"] for o in pair)  # someone copied it
    assert len(keys_in(s3, letters_bucket())) == len(letters)
    assert keys_in(s3, transient()) == []
    for letter, created_at in zip(letters, created, strict=True):
        key = f"2024-07-15/NOTIFY.ABC123.D.2.C.202407151000{created_at[-3:-1]}.PDF"
        assert read(s3, letters_bucket(), key) == letter.body
