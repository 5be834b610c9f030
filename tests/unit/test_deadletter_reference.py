"""Dead letters of sink batches: the reference kept instead of the rows, and bad references.

In-process moto and the test Redis; the end-to-end path (poisoned batch, scan of Redis,
replay through a worker) is tests/integration/test_deadletter_recipients.py.
"""

from __future__ import annotations

import json
import uuid

import pytest

from storage.errors import InvalidInput
from tasks.csv_batches import replay
from tests.csv_fixtures import SERVICE_ID, csv_text, make_spec, upload
from worker.runtime import deadletter, queues

SECRET = "07700900123"


def batch(upload_id: str, numbers: list[int]) -> dict:
    return {
        "service_id": SERVICE_ID,
        "upload_id": upload_id,
        "rows": [
            {"notification_id": str(uuid.uuid4()), "row_number": n, "recipient": SECRET}
            for n in numbers
        ],
    }


def test_a_sink_batch_is_stored_as_a_reference(redis_client):
    upload_id = str(uuid.uuid4())
    task, kept = deadletter.stored_form(
        queues.NOTIFICATIONS_SAVE_BATCH, {"batch": batch(upload_id, [7, 3, 9])}
    )
    assert task == queues.CSV_REPLAY_ROWS
    assert kept == {
        "service_id": SERVICE_ID,
        "upload_id": upload_id,
        "first_row": 3,
        "last_row": 9,
        "rows": 3,
    }  # no job state in Redis here: no etag or params either
    assert SECRET not in json.dumps(kept)


def test_other_tasks_keep_their_arguments():
    kwargs = {"service_id": SERVICE_ID, "kind": "uploads"}
    assert deadletter.stored_form(queues.REPORTS_GENERATE, kwargs) == (
        queues.REPORTS_GENERATE,
        kwargs,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"batch": "text"},
        {"batch": {"service_id": "nope", "upload_id": str(uuid.uuid4()), "rows": []}},
        {"batch": {"service_id": SERVICE_ID, "upload_id": str(uuid.uuid4()), "rows": "x"}},
        {"batch": {"service_id": SERVICE_ID, "upload_id": str(uuid.uuid4()), "rows": [{}]}},
    ],
)
def test_a_malformed_batch_keeps_no_data_and_says_it_cannot_be_replayed(kwargs, redis_client):
    task, kept = replay.batch_reference(kwargs)
    assert task == queues.CSV_REPLAY_ROWS
    assert kept["unreplayable"] is True
    assert "rows" not in kept and "batch" not in kept
    with pytest.raises(InvalidInput) as raised:
        replay.replay_rows(SERVICE_ID, str(uuid.uuid4()), 1, 1, unreplayable=True)
    assert raised.value.code == "unreplayable"


@pytest.mark.parametrize(
    ("first", "last"),
    [(0, 5), (5, 4), ("1", 2), (1.0, 2)],
    ids=["zero", "reversed", "str", "float"],
)
def test_bad_row_ranges_are_refused(first, last, redis_client):
    with pytest.raises(InvalidInput):
        replay.replay_rows(SERVICE_ID, str(uuid.uuid4()), first, last)


def test_bad_ids_are_refused_before_any_s3_call(redis_client):
    with pytest.raises(InvalidInput):
        replay.replay_rows("../other", str(uuid.uuid4()), 1, 2)
    with pytest.raises(InvalidInput):
        replay.replay_rows(SERVICE_ID, "not-a-uuid", 1, 2)


def test_rebuilt_batch_is_the_dispatched_one(mock_s3, redis_client):
    rows = [["07700 900001", "Ann"], ["bad", "Bob"], ["07700 900003", "Cy"], ["07700 900004", "D"]]
    upload_id = upload(mock_s3, csv_text(["phone number", "name"], rows))
    spec = make_spec(upload_id)
    etag = mock_s3.head_object(Bucket=spec.bucket, Key=spec.key)["ETag"]
    rebuilt = replay.rebuild_batch(spec, etag, 2, 3)
    assert [r["row_number"] for r in rebuilt["rows"]] == [3]  # row 2 is invalid
    (row,) = rebuilt["rows"]
    assert row["notification_id"] == str(uuid.uuid5(uuid.UUID(upload_id), "3"))
    assert row["recipient"] == "447700900003"
    assert row["personalisation"]["name"] == "Cy"
    assert rebuilt["upload_id"] == upload_id and rebuilt["service_id"] == SERVICE_ID


def test_a_replaced_file_is_not_rebuilt(mock_s3, redis_client):
    upload_id = upload(mock_s3, csv_text(["phone number", "name"], [["07700 900001", "A"]]))
    params = make_spec(upload_id).params()
    with pytest.raises(InvalidInput) as raised:
        replay.replay_rows(SERVICE_ID, upload_id, 1, 1, source_etag="0" * 32, params=params)
    assert raised.value.code == "file_changed"


def test_a_missing_file_is_reported(mock_s3, redis_client):
    params = make_spec(str(uuid.uuid4())).params()
    with pytest.raises(InvalidInput) as raised:
        replay.replay_rows(SERVICE_ID, str(uuid.uuid4()), 1, 1, params=params)
    assert raised.value.code == "file_not_found"
