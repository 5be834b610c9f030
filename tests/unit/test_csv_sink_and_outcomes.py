"""The built-in sink, the per-row outcomes API and the ``jobs`` commands."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from storage.errors import InvalidInput
from storage.keys import isoformat
from tasks.csv_batches import processing, sink
from tasks.csv_batches import state as st
from tasks.csv_batches.row_outcomes import iter_row_outcomes
from tasks.csv_batches.store.batch import parse_batch
from tests.csv_fixtures import (
    SERVICE_ID,
    TEMPLATE_ID,
    FakeApp,
    csv_text,
    head,
    make_spec,
    sms_rows,
    upload,
)


@pytest.fixture
def env(csv_s3):
    return csv_s3


def run_job(upload_id: str, **kw):
    app = FakeApp()
    result = processing.process_job(make_spec(upload_id, **kw), app=app)
    return result, app


# --- sink ---------------------------------------------------------------------------------------


def test_sink_stores_rows_once_and_counts_only_new_ones(env, redis_client):
    upload_id = upload(env, csv_text(["phone number", "name"], sms_rows(2500)))
    _, app = run_job(upload_id)
    batches = app.batches()
    assert [sink.save_batch(b)["stored"] for b in batches] == [1000, 1000, 500]
    assert [sink.save_batch(b)["stored"] for b in batches] == [0, 0, 0]  # redelivered
    assert st.read_progress(upload_id)["stored"] == 2500
    stored = redis_client.hgetall(st.notifications_key(upload_id))
    assert len(stored) == 2500
    row = json.loads(stored[str(uuid.uuid5(uuid.UUID(upload_id), "7"))])
    assert row["row_number"] == 7 and row["template_id"] == TEMPLATE_ID
    assert row["upload_id"] == upload_id and row["template_type"] == "sms"
    assert redis_client.ttl(st.notifications_key(upload_id)) > 0


def test_a_late_batch_never_recreates_an_expired_job_hash(env, redis_client):
    upload_id = upload(env, "phone number\n07700900123\n")
    _, app = run_job(upload_id, placeholders=())
    redis_client.delete(st.job_key(upload_id))
    sink.save_batch(app.batches()[0])
    assert not redis_client.exists(st.job_key(upload_id))
    assert redis_client.ttl(st.notifications_key(upload_id)) > 0


@pytest.mark.parametrize(
    "batch",
    [
        None,
        {"upload_id": "x", "service_id": SERVICE_ID, "rows": []},
        {"upload_id": str(uuid.uuid4()), "service_id": SERVICE_ID, "rows": []},
        {"upload_id": str(uuid.uuid4()), "service_id": SERVICE_ID, "rows": [{"row_number": 1}]},
        {
            "upload_id": str(uuid.uuid4()),
            "service_id": SERVICE_ID,
            "rows": [
                {"notification_id": "../x", "row_number": 1, "recipient": "", "personalisation": {}}
            ],
        },
    ],
)
def test_sink_refuses_malformed_batches(redis_client, batch):
    with pytest.raises(InvalidInput):
        sink.save_batch(batch)


def _rows(*ids: object) -> list[dict]:
    return [
        {"notification_id": i, "row_number": n, "recipient": "x", "personalisation": {}}
        for n, i in enumerate(ids, start=1)
    ]


_A, _B = str(uuid.uuid4()), str(uuid.uuid4())


@pytest.mark.parametrize(
    ("rows", "named"),
    [
        (_rows(_A, f"{_A},{_B}", ""), "notification_id"),  # two ids in one, none in another
        (_rows(_A, _B.upper(), 7), "notification_id"),  # not text
        (_rows(_A, _B + " "), "notification_id"),
        (_rows(_A, None), "notification_id"),
        ([*_rows(_A), ["not", "an", "object"]], "every row needs"),
        ([*_rows(_A), {"notification_id": _B, "row_number": 2}], "every row needs"),
    ],
)
def test_sink_names_what_is_wrong_with_a_row(rows, named):
    batch = {"upload_id": str(uuid.uuid4()), "service_id": SERVICE_ID, "rows": rows}
    with pytest.raises(InvalidInput, match=named):
        parse_batch(batch)


def test_sink_takes_ids_in_either_case():
    rows = _rows(_A, _B.upper())
    parsed = parse_batch({"upload_id": str(uuid.uuid4()), "service_id": SERVICE_ID, "rows": rows})
    assert parsed.rows == rows


# --- outcomes -----------------------------------------------------------------------------------


def test_outcomes_work_after_redis_forgot_the_job(env, redis_client):
    upload_id = upload(env, csv_text(["phone number", "name"], sms_rows(30, bad_every=7)))
    _, app = run_job(upload_id)
    for name in list(redis_client.scan_iter("notify:*")):
        redis_client.delete(name)
    outcomes = list(iter_row_outcomes(SERVICE_ID, upload_id))
    assert [o.row_number for o in outcomes] == list(range(1, 31))
    dispatched = [o for o in outcomes if o.status == "dispatched"]
    assert [o.notification_id for o in dispatched] == [r["notification_id"] for r in app.rows()]
    assert [o.recipient for o in dispatched] == [r["recipient"] for r in app.rows()]
    assert all(o.error_code for o in outcomes if o.status == "invalid")


def test_outcomes_refuse_unknown_unfinished_failed_and_foreign_jobs(env):
    with pytest.raises(InvalidInput) as caught:
        iter_row_outcomes(SERVICE_ID, str(uuid.uuid4()))
    assert caught.value.code == "job_not_found"

    never_ran = upload(env, "phone number\n07700900123\n")
    with pytest.raises(InvalidInput) as caught:
        iter_row_outcomes(SERVICE_ID, never_ran)
    assert caught.value.code == "job_not_found"

    failed = upload(env, "mobile\n07700900123\n")
    run_job(failed, placeholders=())
    with pytest.raises(InvalidInput) as caught:
        iter_row_outcomes(SERVICE_ID, failed)
    assert caught.value.code == "job_failed"

    done = upload(env, "phone number\n07700900123\n")
    run_job(done, placeholders=())
    with pytest.raises(InvalidInput) as caught:
        iter_row_outcomes(str(uuid.uuid4()), done)  # another service
    assert caught.value.code == "job_not_found"


def test_outcomes_notice_a_replaced_file(env):
    upload_id = upload(env, "phone number\n07700900123\n07700900124\n")
    run_job(upload_id, placeholders=())
    meta = head(env, upload_id)["Metadata"]
    upload(env, "phone number\n07700900123\n", upload_id=upload_id, metadata=meta)
    with pytest.raises(InvalidInput) as caught:
        list(iter_row_outcomes(SERVICE_ID, upload_id))
    assert caught.value.code == "job_changed"


def test_outcomes_of_a_contact_list_job(env):
    upload_id = upload(env, "phone number\n07700900123\n", source="contact-list")
    run_job(upload_id, placeholders=(), source="contact-list")
    (outcome,) = iter_row_outcomes(SERVICE_ID, upload_id, source="contact-list")
    assert outcome.status == "dispatched" and outcome.recipient == "447700900123"


# --- jobs commands ------------------------------------------------------------------------------


def cli(*args: str):
    from worker.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_jobs_show_from_redis_and_from_metadata(env, redis_client):
    upload_id = upload(env, csv_text(["phone number", "name"], sms_rows(12, bad_every=4)))
    run_job(upload_id)
    out = cli("jobs", "show", upload_id, "--json")
    assert out.exit_code == 0
    shown = json.loads(out.output)
    assert (shown["status"], shown["total"], shown["dispatched"], shown["invalid"]) == (
        "finished",
        12,
        9,
        3,
    )
    assert shown["from"] == "redis"
    text = cli("jobs", "show", upload_id)
    assert "finished" in text.output and "dispatched" in text.output

    redis_client.delete(st.job_key(upload_id))
    from worker.cli import main

    missing = CliRunner().invoke(main, ["jobs", "show", upload_id])
    assert missing.exit_code != 0 and "--service-id" in missing.output
    out = cli("jobs", "show", upload_id, "--service-id", SERVICE_ID, "--json")
    shown = json.loads(out.output)
    assert (shown["status"], shown["dispatched"], shown["from"]) == (
        "finished",
        9,
        "object metadata",
    )


def test_jobs_list_and_cancel(env):
    scheduled = upload(env, "phone number\n07700900123\n")
    processing.process_job(
        make_spec(scheduled, placeholders=()),
        scheduled_for=isoformat(datetime.now(UTC) + timedelta(hours=2)),
        app=FakeApp(),
    )
    running = upload(env, "phone number\n07700900123\n")
    st.start_running(running, {"service_id": SERVICE_ID, "source": "csv-upload"})
    listed = json.loads(cli("jobs", "list", "--json").output)
    assert {(j["upload_id"], j["status"]) for j in listed} == {
        (scheduled, "scheduled"),
        (running, "running"),
    }
    assert "scheduled" in cli("jobs", "list").output
    out = cli("jobs", "cancel", scheduled)
    assert out.exit_code == 0 and "cancelled" in out.output
    assert head(env, scheduled)["Metadata"]["processing_status"] == "cancelled"
    refused = cli("jobs", "cancel", running)
    assert refused.exit_code != 0 and "already started" in refused.output
    assert [j["upload_id"] for j in json.loads(cli("jobs", "list", "--json").output)] == [running]
