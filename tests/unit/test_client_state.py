"""The client's "queued" record is the workers' own: same keys, fields and expiries as
``tasks.csv_batches.state.record_queued`` writes, and the workers read it back."""

from __future__ import annotations

import json
import uuid
from typing import Any

from notify_worker_client import NotifyClient
from notify_worker_client import state as client_state

from tasks.csv_batches import state as st
from worker.runtime import queues
from worker.runtime.logs import clean_request_id

SERVICE = str(uuid.uuid4())
TEMPLATE = str(uuid.uuid4())


class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_task(self, name: str, **options: Any) -> None:
        self.sent.append({"name": name, **options})


def job_kwargs(upload_id: str) -> dict[str, Any]:
    return {
        "service_id": SERVICE,
        "upload_id": upload_id,
        "template": {"id": TEMPLATE, "type": "letter", "placeholders": ["name", "£"]},
        "options": {"allow_international_sms": False, "allow_international_letters": True},
        "source": "contact-list",
        "sender_id": TEMPLATE,
    }


def test_the_client_writes_what_the_workers_write(redis_client):
    by_client, by_workers = str(uuid.uuid4()), str(uuid.uuid4())
    assert (
        client_state.record_queued(
            redis_client, by_client, job_kwargs(by_client), "x-csv-batches-bulk", ttl_seconds=3600
        )
        == st.QUEUED
    )
    assert st.record_queued(by_workers, job_kwargs(by_workers), "x-csv-batches-bulk") == st.QUEUED

    assert client_state.job_key(by_client) == st.job_key(by_client)
    assert client_state.PENDING_KEY == st.PENDING_KEY
    ours, theirs = redis_client.hgetall(st.job_key(by_client)), st.read_job(by_workers)
    assert set(ours) == set(theirs)
    times = ("queued_at", "queued_epoch", "updated_at")
    assert {k: v for k, v in ours.items() if k not in times} == {
        k: v for k, v in theirs.items() if k not in times
    }
    assert json.loads(ours["params"])["template"]["placeholders"] == ["name", "£"]
    assert ours["queued_at"].endswith("Z") and len(ours["queued_at"]) == len(theirs["queued_at"])
    assert abs(float(ours["queued_epoch"]) - float(theirs["queued_epoch"])) < 60
    assert 0 < redis_client.ttl(st.job_key(by_client)) <= 3600
    assert redis_client.zscore(st.PENDING_KEY, by_client) is not None

    # The workers read it as their own: progress, pending uploads, and the task to re-send.
    progress = st.read_progress(by_client)
    assert progress["status"] == "queued" and progress["source"] == "contact-list"
    assert st.pending_uploads()[by_client]["status"] == "queued"
    assert st.job_params(ours) == st.job_params(theirs)


def test_a_job_the_workers_know_already_is_left_alone(redis_client):
    upload_id = str(uuid.uuid4())
    redis_client.hset(st.job_key(upload_id), mapping={"status": "running", "total": "5"})
    status = client_state.record_queued(redis_client, upload_id, job_kwargs(upload_id), "q")
    assert status == "running"
    assert redis_client.hgetall(st.job_key(upload_id)) == {"status": "running", "total": "5"}


def test_the_client_records_through_the_redis_it_is_given_only(redis_client):
    upload_id = str(uuid.uuid4())
    notify = NotifyClient(Recorder(), queue_prefix="x-", state_redis=redis_client)  # type: ignore[arg-type]
    notify.process_csv(
        SERVICE, upload_id, template_id=TEMPLATE, template_type="sms", notification_count=9999
    )
    assert notify.job_state(upload_id)["queue"] == "x-csv-batches-bulk"
    assert notify.app.sent[0]["queue"] == "x-csv-batches-bulk"

    without = str(uuid.uuid4())
    NotifyClient(Recorder()).process_csv(  # type: ignore[arg-type]
        SERVICE, without, template_id=TEMPLATE, template_type="sms"
    )
    assert st.read_job(without) is None


def test_the_in_repo_client_records_in_the_workers_state(redis_client):
    from worker.client import NotifyClient as RepoClient

    upload_id = str(uuid.uuid4())
    app = Recorder()
    RepoClient(app).process_csv(  # type: ignore[arg-type]
        SERVICE, upload_id, template_id=TEMPLATE, template_type="email", request_id="r-1"
    )
    assert st.read_job(upload_id)["queue"] == queues.CSV_BATCHES == app.sent[0]["queue"]
    assert app.sent[0]["headers"] == {queues.REQUEST_ID_HEADER: "r-1"}
    assert RepoClient(app).job_progress(upload_id)["status"] == "queued"  # type: ignore[arg-type]


def test_request_ids_reach_log_lines_only_when_safe():
    assert clean_request_id(None) is None and clean_request_id("") is None
    assert clean_request_id("3f2a-req:1/2+=") == "3f2a-req:1/2+="
    assert clean_request_id("a\nFAKE LINE") == "invalid"
    assert clean_request_id("x" * 129) == "invalid"
    assert clean_request_id(12) == "invalid"
