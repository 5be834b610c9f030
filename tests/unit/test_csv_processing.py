"""The CSV job core, called directly (in-process S3, the test Redis, a recording fake app)."""

from __future__ import annotations

import uuid

import pytest

from tasks.csv_batches import processing
from tasks.csv_batches import state as st
from tasks.csv_batches.fanout import notification_id_factory
from tests.csv_fixtures import (
    SERVICE_ID,
    TEMPLATE_ID,
    WEB_APP_METADATA,
    FakeApp,
    SimulatedCrash,
    csv_text,
    head,
    make_spec,
    sms_rows,
    upload,
    worker_settings,
)


@pytest.fixture
def env(csv_s3):
    return csv_s3


def run(upload_id: str, app: FakeApp | None = None, **kw):
    app = app or FakeApp()
    scheduled_for = kw.pop("scheduled_for", None)
    return processing.process_job(make_spec(upload_id, **kw), scheduled_for=scheduled_for, app=app)


# --- fan-out ------------------------------------------------------------------------------------


def test_valid_rows_go_out_in_batches_of_at_most_1000_in_the_spec_shape(env):
    rows = sms_rows(2500, bad_every=50)  # 50 bad rows
    upload_id = upload(env, csv_text(["Phone_Number", "Name"], rows))
    app = FakeApp()
    result = run(upload_id, app)

    assert result["status"] == "ok"
    assert result["job_status"] == "finished"
    assert (result["rows_total"], result["rows_dispatched"], result["rows_invalid"]) == (
        2500,
        2450,
        50,
    )
    assert [len(b["rows"]) for b in app.batches()] == [1000, 1000, 450]
    message = app.sent[0]
    assert message["name"] == "notify.notifications.save_batch"
    assert message["queue"] == "database-tasks"
    assert message["kwargsrepr"] == "{'batch': '<1000 rows>'}"  # no recipients in events
    batch = app.batches()[0]
    assert set(batch) == {
        "service_id",
        "upload_id",
        "template_id",
        "template_type",
        "sender_id",
        "rows",
    }
    assert (batch["service_id"], batch["upload_id"], batch["template_id"]) == (
        SERVICE_ID,
        upload_id,
        TEMPLATE_ID,
    )
    assert batch["template_type"] == "sms" and batch["sender_id"] is None
    first = batch["rows"][0]
    assert first == {
        "notification_id": str(uuid.uuid5(uuid.UUID(upload_id), "1")),
        "row_number": 1,
        "recipient": "447700900001",
        "personalisation": {"Phone_Number": "07700 900001", "Name": "Person 1"},
    }
    numbers = [r["row_number"] for r in app.rows()]
    assert numbers == [n for n in range(1, 2501) if n % 50]
    assert all(
        r["notification_id"] == str(uuid.uuid5(uuid.UUID(upload_id), str(r["row_number"])))
        for r in app.rows()
    )


def test_fast_notification_ids_equal_uuid5():
    upload_id = str(uuid.uuid4())
    make = notification_id_factory(upload_id)
    for n in (1, 9, 10, 999, 1000, 123456, 10**6):
        assert make(n) == str(uuid.uuid5(uuid.UUID(upload_id), str(n)))


def test_sender_id_and_options_are_passed_through(env):
    sender = str(uuid.uuid4())
    upload_id = upload(env, "phone number\n+1 202 555 0143\n07700900123\n")
    app = FakeApp()
    result = run(
        upload_id,
        app,
        placeholders=(),
        sender_id=sender,
        options={"allow_international_sms": True},
    )
    assert result["rows_dispatched"] == 2
    assert app.batches()[0]["sender_id"] == sender
    assert [r["recipient"] for r in app.rows()] == ["12025550143", "447700900123"]


def test_big_job_sends_its_batches_to_the_bulk_sink_queue(env, monkeypatch):
    upload_id = upload(env, csv_text(["phone number", "name"], sms_rows(30)))
    with worker_settings(monkeypatch, NOTIFY_BULK_THRESHOLD_ROWS="20"):
        app = FakeApp()
        run(upload_id, app)
    assert {m["queue"] for m in app.sent} == {"database-tasks-bulk"}
    small = upload(env, csv_text(["phone number", "name"], sms_rows(20)))
    with worker_settings(monkeypatch, NOTIFY_BULK_THRESHOLD_ROWS="20"):
        app = FakeApp()
        run(small, app)
    assert {m["queue"] for m in app.sent} == {"database-tasks"}


def test_email_and_letter_jobs(env):
    upload_id = upload(
        env,
        "email address,name\nAnn@Example.com ,Ann\nnot-an-email,Bob\n, Carl\n",
    )
    app = FakeApp()
    result = run(upload_id, app, template_type="email")
    assert (result["rows_dispatched"], result["rows_invalid"]) == (1, 2)
    assert app.rows()[0]["recipient"] == "Ann@Example.com"

    letter = upload(
        env,
        "address line 1,address line 2,postcode\nA Person,1 High Street,SW1A 1AA\nB Person,,\n",
    )
    app = FakeApp()
    result = run(letter, app, template_type="letter", placeholders=())
    assert (result["rows_dispatched"], result["rows_invalid"]) == (1, 1)
    assert app.rows()[0]["recipient"] == "A Person\n1 High Street\nSW1A 1AA"


def test_contact_list_source_reads_the_contact_list_bucket(env):
    upload_id = upload(env, "phone number\n07700900123\n", source="contact-list")
    app = FakeApp()
    result = run(upload_id, app, placeholders=(), source="contact-list")
    assert result["rows_dispatched"] == 1
    meta = head(env, upload_id, source="contact-list")["Metadata"]
    assert meta["processing_status"] == "finished"
    # Not found in the CSV bucket: the source decides the bucket.
    other = upload(env, "phone number\n07700900123\n", source="contact-list")
    result = run(other, FakeApp(), placeholders=())
    assert result["status"] == "failed" and result["error_code"] == "file_not_found"


# --- outcome ------------------------------------------------------------------------------------


def test_outcome_is_written_to_metadata_preserving_every_key(env):
    upload_id = upload(
        env,
        "phone number,name\n07700900123,Ann\n123,Bob\n",
        metadata={**WEB_APP_METADATA, "sender_id": str(uuid.uuid4()), "extra": "kept"},
    )
    before = head(env, upload_id)
    result = run(upload_id)
    after = head(env, upload_id)
    meta = after["Metadata"]
    for name, value in before["Metadata"].items():
        assert meta[name] == value
    assert meta["processing_status"] == "finished"
    assert meta["processing_rows_total"] == "2"
    assert meta["processing_rows_dispatched"] == "1"
    assert meta["processing_rows_invalid"] == "1"
    assert meta["processing_finished_at"] == result["finished_at"]
    assert "processing_error_code" not in meta
    from storage.keys import isoformat

    assert meta["uploaded_at"] == isoformat(before["LastModified"])
    assert after["ServerSideEncryption"] == "AES256"


def test_a_repeat_after_finish_changes_nothing(env):
    upload_id = upload(env, "phone number,name\n07700900123,Ann\n")
    first = run(upload_id)
    stamp = head(env, upload_id)["LastModified"]
    app = FakeApp()
    again = run(upload_id, app)
    assert again["status"] == "skipped" and again["reason"] == "already_done"
    for name in ("rows_total", "rows_dispatched", "rows_invalid", "job_status"):
        assert again[name] == first[name]
    assert app.sent == []
    assert head(env, upload_id)["LastModified"] == stamp


def test_a_repeat_after_redis_lost_the_state_trusts_the_metadata(env, redis_client):
    upload_id = upload(env, "phone number,name\n07700900123,Ann\n")
    first = run(upload_id)
    stamp = head(env, upload_id)["LastModified"]
    redis_client.delete(st.job_key(upload_id))
    app = FakeApp()
    again = run(upload_id, app)
    assert again["status"] == "skipped"
    assert again["rows_dispatched"] == first["rows_dispatched"] == 1
    assert app.sent == []
    assert head(env, upload_id)["LastModified"] == stamp
    assert st.read_progress(upload_id)["status"] == "finished"  # Redis repaired


def test_a_delivery_while_another_runner_holds_the_lease_is_skipped(env):
    upload_id = upload(env, "phone number,name\n07700900123,Ann\n")
    assert st.acquire_lease(upload_id, "other-runner", 60)
    app = FakeApp()
    result = run(upload_id, app)
    assert result["status"] == "skipped" and result["reason"] == "already_running"
    assert app.sent == []
    assert "processing_status" not in head(env, upload_id)["Metadata"]


# --- file-level errors --------------------------------------------------------------------------

FILE_ERRORS = [
    ("no_rows", "phone number,name\n", "sms", ("name",)),
    ("no_rows", "", "sms", ()),
    ("missing_recipient_column", "mobile,name\n07700900123,Ann\n", "sms", ("name",)),
    ("duplicate_recipient_column", "phone number,Phone_Number\n1,2\n", "sms", ()),
    ("missing_placeholder_column", "phone number\n07700900123\n", "sms", ("name",)),
    ("too_many_rows", "phone number\n" + "07700900123\n" * 11, "sms", ()),
    ("not_utf8", b"phone number,name\n07700900123,Zo\xeb\n", "sms", ("name",)),
    ("not_csv", b"phone number\n0770\x00\n", "sms", ()),
    ("line_too_long", "phone number,name\n07700900123," + "x" * (1 << 20) + "\n", "sms", ()),
    ("too_many_columns", "phone number" + ",x" * 1000 + "\n07700900123\n", "sms", ()),
    ("missing_recipient_column", "address line 1,postcode\na,b\n", "letter", ()),
]


@pytest.mark.parametrize(("code", "body", "template_type", "placeholders"), FILE_ERRORS)
def test_file_level_errors_fail_the_job_and_dispatch_nothing(
    env, monkeypatch, code, body, template_type, placeholders
):
    # The first rows are valid: a file error anywhere must stop every row going out.
    upload_id = upload(env, body)
    app = FakeApp()
    with worker_settings(monkeypatch, NOTIFY_CSV_MAX_ROWS="10"):
        result = run(upload_id, app, template_type=template_type, placeholders=placeholders)
    assert result["status"] == "failed"
    assert result["error_code"] == code
    assert result["error_message"]
    assert result["rows_dispatched"] == 0
    assert app.sent == []
    meta = head(env, upload_id)["Metadata"]
    assert meta["processing_status"] == "failed"
    assert meta["processing_error_code"] == code
    assert meta["original_file_name"] == WEB_APP_METADATA["original_file_name"]
    progress = st.read_progress(upload_id)
    assert progress["status"] == "failed" and progress["error_code"] == code


def test_a_file_error_late_in_the_file_still_dispatches_nothing(env):
    body = ("phone number\n" + "07700900123\n" * 3000).encode() + b"07700\xff\n"
    upload_id = upload(env, body)
    app = FakeApp()
    result = run(upload_id, app, placeholders=())
    assert result["error_code"] == "not_utf8"
    assert app.sent == []


def test_bad_arguments_are_refused_before_any_s3_call(env):
    from storage.errors import InvalidInput
    from tasks.csv_batches.spec import JobSpec

    good = {"id": TEMPLATE_ID, "type": "sms", "placeholders": []}
    cases = [
        {"service_id": "../etc", "upload_id": str(uuid.uuid4()), "template": good},
        {"service_id": SERVICE_ID, "upload_id": "x", "template": good},
        {
            "service_id": SERVICE_ID,
            "upload_id": str(uuid.uuid4()),
            "template": {**good, "type": "fax"},
        },
        {
            "service_id": SERVICE_ID,
            "upload_id": str(uuid.uuid4()),
            "template": good,
            "options": {"allow_international_sms": "yes"},
        },
        {
            "service_id": SERVICE_ID,
            "upload_id": str(uuid.uuid4()),
            "template": good,
            "source": "logo",
        },
    ]
    for kwargs in cases:
        with pytest.raises(InvalidInput):
            JobSpec.from_kwargs(**kwargs)


# --- row errors ---------------------------------------------------------------------------------


def test_row_errors_have_codes_and_messages(env):
    from tasks.csv_batches.row_outcomes import iter_row_outcomes

    rows = [
        ["07700900123", "Ann"],
        ["", "Blank"],
        ["12345", "Short"],
        ["077009001234567", "Long"],
        ["07700 9001x3", "Letter"],
        ["+1 202 555 0143", "Abroad"],
        [],
        ["07700900124", ""],
    ]
    upload_id = upload(env, csv_text(["phone number", "name"], rows))
    result = run(upload_id)
    assert (result["rows_total"], result["rows_dispatched"]) == (8, 1)
    outcomes = list(iter_row_outcomes(SERVICE_ID, upload_id))
    codes = [(o.row_number, o.status, o.error_code) for o in outcomes]
    assert codes == [
        (1, "dispatched", None),
        (2, "invalid", "missing"),
        (3, "invalid", "too_short"),
        (4, "invalid", "too_long"),
        (5, "invalid", "unknown_character"),
        (6, "invalid", "not_a_uk_mobile"),
        (7, "invalid", "missing"),
        (8, "invalid", "missing_placeholder"),
    ]
    assert all(o.error_message for o in outcomes[1:])
    assert outcomes[0].recipient == "447700900123"
    assert outcomes[0].notification_id == str(uuid.uuid5(uuid.UUID(upload_id), "1"))
    assert outcomes[2].recipient == "12345" and outcomes[2].notification_id is None


# --- crash and resume ---------------------------------------------------------------------------


def test_a_crash_mid_dispatch_resumes_after_the_checkpoint(env):
    rows = sms_rows(5500, bad_every=100)
    upload_id = upload(env, csv_text(["phone number", "name"], rows))
    crashing = FakeApp(fail_after=3)
    with pytest.raises(SimulatedCrash):
        run(upload_id, crashing)
    progress = st.read_progress(upload_id)
    assert progress["status"] == "running"
    assert progress["checkpoint"] == 3030  # the 3,000th valid row
    assert progress["dispatched"] == 3000 and progress["invalid"] == 30
    assert "processing_status" not in head(env, upload_id)["Metadata"]
    # The crashed run's lease is gone with it (here: released on the way out; after a
    # SIGKILL it expires after NOTIFY_JOB_STALE_SECONDS).

    resumed = FakeApp()
    result = run(upload_id, resumed)
    assert result["status"] == "ok"
    assert (result["rows_dispatched"], result["rows_invalid"]) == (5445, 55)
    assert resumed.rows()[0]["row_number"] == 3031
    sent = [r["notification_id"] for r in crashing.rows() + resumed.rows()]
    assert len(sent) == len(set(sent)) == 5445
    assert st.read_job(upload_id)["runs"] == "2"


def test_a_crash_between_publish_and_checkpoint_only_repeats_one_batch(env, monkeypatch):
    rows = sms_rows(3000)
    upload_id = upload(env, csv_text(["phone number", "name"], rows))
    real_update = st.update_if_holder
    calls = {"n": 0}

    def crash_on_second_checkpoint(upload, token, fields):
        if "checkpoint" in fields:
            calls["n"] += 1
            if calls["n"] == 2:
                raise SimulatedCrash("after publish, before checkpoint")
        return real_update(upload, token, fields)

    monkeypatch.setattr(st, "update_if_holder", crash_on_second_checkpoint)
    first = FakeApp()
    with pytest.raises(SimulatedCrash):
        run(upload_id, first)
    monkeypatch.setattr(st, "update_if_holder", real_update)
    second = FakeApp()
    run(upload_id, second)
    assert second.rows()[0]["row_number"] == 1001  # batch 2 again, then 3
    ids = [r["notification_id"] for r in first.rows() + second.rows()]
    assert len(set(ids)) == 3000 and len(ids) == 4000  # one batch twice: same ids


# --- progress -----------------------------------------------------------------------------------


def test_progress_counters_are_in_one_hash(env):
    upload_id = upload(env, csv_text(["phone number", "name"], sms_rows(1200, bad_every=10)))
    run(upload_id)
    progress = st.read_progress(upload_id)
    assert progress["status"] == "finished"
    assert (progress["total"], progress["dispatched"], progress["invalid"]) == (1200, 1080, 120)
    assert progress["checkpoint"] == 1200
    assert progress["started_at"] and progress["finished_at"] and progress["updated_at"]
    assert progress["stuck"] is False
    assert st.service_uploads(SERVICE_ID) == [upload_id]


def test_outcome_write_reads_again_when_the_object_changed_under_it(env, monkeypatch):
    """Real S3 refuses the pinned copy (412) if someone rewrote the object after our HEAD
    (moto ignores CopySourceIfMatch, so the refusal is simulated): read again, keep their key."""
    from storage import objects
    from storage.errors import S3PreconditionFailed
    from tasks.csv_batches import outcome_metadata

    upload_id = upload(env, "phone number,name\n07700900123,Ann\n")
    real = objects.replace_metadata
    calls = {"n": 0}

    def racing_copy(info, metadata, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            # The web app adds a key between our HEAD and our copy.
            env.copy_object(
                Bucket=info.bucket,
                Key=info.key,
                CopySource={"Bucket": info.bucket, "Key": info.key},
                Metadata={**info.metadata, "late": "yes"},
                MetadataDirective="REPLACE",
                ServerSideEncryption="AES256",
            )
            raise S3PreconditionFailed("changed", bucket=info.bucket, key=info.key)
        return real(info, metadata, **kw)

    monkeypatch.setattr(outcome_metadata, "replace_metadata", racing_copy)
    result = run(upload_id)
    assert result["status"] == "ok"
    meta = head(env, upload_id)["Metadata"]
    assert meta["late"] == "yes" and meta["processing_status"] == "finished"
    assert calls["n"] == 2
