"""The letters tasks through a real broker and worker, against moto's server over HTTP.

Covers the web app's view (send by name, JSON results), duplicate delivery, two movers at
once (threads forced into the worst interleavings) and a race injected over HTTP.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tasks.letters.moves import LetterRetry, move_letter
from tests.letters_fixtures import (
    DEST_KEY,
    SECRETS,
    FaultyClient,
    exists,
    keys_in,
    letters_bucket,
    pdf_body,
    put_letter,
    read,
    transient_bucket,
)
from worker.runtime import queues

pytestmark = pytest.mark.integration

TIMEOUT = 30


def send(name: str, kwargs: dict[str, Any], **options: Any):
    from worker.runtime.app import app

    return app.send_task(name, kwargs=kwargs, queue=queues.TASK_QUEUES[name], **options)


def test_move_through_the_worker_by_the_web_app_client(celery_worker, s3, redis_client):
    from worker.client import NotifyClient

    letter = put_letter(s3)
    result = (
        NotifyClient()
        .move_transient_letter(
            letter.service_id,
            letter.upload_id,
            reference="ABC123",
            postage="second",
            created_at="2024-07-15T10:00:00Z",
        )
        .get(timeout=TIMEOUT)
    )

    assert result["status"] == "ok"
    assert result["destination_key"] == DEST_KEY
    assert result["already_moved"] is False
    assert not exists(s3, transient_bucket(), letter.key)
    assert read(s3, letters_bucket(), DEST_KEY) == letter.body
    for secret in SECRETS:
        assert secret not in repr(result)
    # No state of ours in Redis but the base class's delivery counter and the task's lease
    # record (kept to recognise a late redelivery), both expiring.
    for name in redis_client.scan_iter("notify:*"):
        assert name.startswith(("notify:deliveries:", "notify:task:", "notify:tasks:"))
        assert redis_client.ttl(name) > 0


def test_duplicate_messages_move_the_letter_exactly_once(celery_worker, s3, redis_client):
    letter = put_letter(s3)
    first = send(queues.LETTERS_MOVE_TRANSIENT, letter.args())
    second = send(queues.LETTERS_MOVE_TRANSIENT, letter.args())

    results = [first.get(timeout=TIMEOUT), second.get(timeout=TIMEOUT)]

    assert [r["status"] for r in results] == ["ok", "ok"]
    assert sorted(r["already_moved"] for r in results) == [False, True]
    assert keys_in(s3, letters_bucket()) == [DEST_KEY]
    assert read(s3, letters_bucket(), DEST_KEY) == letter.body
    assert not exists(s3, transient_bucket(), letter.key)


def test_the_same_message_delivered_twice_is_harmless(celery_worker, s3, redis_client):
    """A redelivery has the same task id (Celery keeps the first SUCCESS in the backend, so
    the runs' return values are collected from the in-process worker's signal instead)."""
    from celery import signals

    letter = put_letter(s3)
    task_id = "letters-redelivered-0001"
    returned: list[dict] = []

    def collect(sender=None, task_id=None, retval=None, **_: Any) -> None:
        if task_id == "letters-redelivered-0001":
            returned.append(retval)

    signals.task_postrun.connect(collect, weak=False)
    try:
        send(queues.LETTERS_MOVE_TRANSIENT, letter.args(), task_id=task_id).get(timeout=TIMEOUT)
        send(queues.LETTERS_MOVE_TRANSIENT, letter.args(), task_id=task_id)  # the redelivery
        deadline = time.monotonic() + TIMEOUT
        while len(returned) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        signals.task_postrun.disconnect(collect)

    assert [r["status"] for r in returned] == ["ok", "ok"]
    assert [r["already_moved"] for r in returned] == [False, True]
    assert redis_client.get(f"notify:deliveries:{task_id}:0") == "2"
    assert keys_in(s3, letters_bucket()) == [DEST_KEY]
    assert not exists(s3, transient_bucket(), letter.key)


def test_refusals_come_back_as_failed_or_skipped_results(celery_worker, s3, redis_client):
    invalid = put_letter(s3, status="invalid")
    skipped = send(queues.LETTERS_MOVE_TRANSIENT, invalid.args()).get(timeout=TIMEOUT)
    assert skipped["status"] == "skipped"
    assert exists(s3, transient_bucket(), invalid.key)

    bad = send(queues.LETTERS_MOVE_TRANSIENT, invalid.args(reference="lower")).get(timeout=TIMEOUT)
    assert bad == {
        "status": "failed",
        "error_code": "invalid_reference",
        "error_message": "reference must be 1-32 characters of A-Z and 0-9.",
    }

    unknown = send(queues.LETTERS_MOVE_TRANSIENT, {**invalid.args(), "colour": "red"})
    assert unknown.get(timeout=TIMEOUT)["error_code"] == "unknown_argument"

    gone = invalid.args(upload_id="6c0f7a4e-7a8e-4c1a-9a55-000000000404")
    not_found = send(queues.LETTERS_MOVE_TRANSIENT, gone).get(timeout=TIMEOUT)
    assert not_found["status"] == "failed"
    assert not_found["error_code"] == "letter_not_found"
    assert not_found["upload_id"] == gone["upload_id"]
    assert redis_client.hlen("notify:deadletter") == 0  # refusals are not dead letters


def test_sweep_task_reports_waiting_letters(celery_worker, s3, redis_client):
    put_letter(s3)
    put_letter(s3, status="invalid")
    result = send(queues.LETTERS_SWEEP_TRANSIENT, {}).get(timeout=TIMEOUT)
    assert result["status"] == "ok"
    assert result["waiting"] == 0  # both are young
    assert result["scanned"] == 2
    assert result["heads"] == 0


# --- two movers at once --------------------------------------------------------------------------


def _run_both(letter, make_clients) -> list[dict | BaseException]:
    """Run two moves of the same letter in threads, each with its own (faulty) client."""
    outcomes: list[dict | BaseException] = [None, None]  # type: ignore[list-item]
    clients = make_clients()

    def run(index: int) -> None:
        try:
            outcomes[index] = move_letter(**letter.args(), client=clients[index])
        except BaseException as error:
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    return outcomes


def _barrier_hook(barrier: threading.Barrier):
    return lambda _: barrier.wait(TIMEOUT)


@pytest.mark.parametrize("meet_before", ["copy_object", "delete_object"])
def test_two_movers_in_lockstep_move_it_once(s3, meet_before):
    """Both read before either copies (or both copy before either deletes)."""
    letter = put_letter(s3, body=pdf_body(50_000))
    barrier = threading.Barrier(2)

    outcomes = _run_both(
        letter,
        lambda: [FaultyClient(s3, before={meet_before: _barrier_hook(barrier)}) for _ in range(2)],
    )

    assert all(isinstance(o, dict) and o["status"] == "ok" for o in outcomes), outcomes
    assert keys_in(s3, letters_bucket()) == [DEST_KEY]
    assert read(s3, letters_bucket(), DEST_KEY) == letter.body
    assert not exists(s3, transient_bucket(), letter.key)


def test_a_mover_that_finishes_while_the_other_waits_to_copy(s3):
    """The second mover has read the source; the first copies and deletes; then it copies."""
    letter = put_letter(s3)
    first_done = threading.Event()
    second_read = threading.Event()
    heads = 0

    def second_read_both(_: dict) -> None:
        nonlocal heads
        heads += 1
        if heads == 2:  # source and destination
            second_read.set()

    def make_clients():
        first = FaultyClient(
            s3,
            before={"copy_object": lambda _: second_read.wait(TIMEOUT)},
            after={"delete_object": lambda _: first_done.set()},
        )
        second = FaultyClient(
            s3,
            before={"copy_object": lambda _: first_done.wait(TIMEOUT)},
            after={"head_object": second_read_both},
            repeat=True,
        )
        return [first, second]

    outcomes = _run_both(letter, make_clients)

    assert all(isinstance(o, dict) and o["status"] == "ok" for o in outcomes), outcomes
    assert [o["already_moved"] for o in outcomes] == [False, True]
    assert keys_in(s3, letters_bucket()) == [DEST_KEY]
    assert read(s3, letters_bucket(), DEST_KEY) == letter.body
    assert not exists(s3, transient_bucket(), letter.key)


def test_source_replaced_between_head_and_copy_over_http(s3):
    """moto's server ignores CopySourceIfMatch too: our ETag check is what stops the delete."""
    letter = put_letter(s3)
    replacement = pdf_body(seed="replaced over http")

    def replace(_: dict) -> None:
        put_letter(s3, service_id=letter.service_id, upload_id=letter.upload_id, body=replacement)

    with pytest.raises(LetterRetry):
        move_letter(**letter.args(), client=FaultyClient(s3, before={"copy_object": replace}))
    assert read(s3, transient_bucket(), letter.key) == replacement

    result = move_letter(**letter.args(), client=s3)
    assert result["status"] == "ok"
    assert read(s3, letters_bucket(), DEST_KEY) == replacement
    assert not exists(s3, transient_bucket(), letter.key)
