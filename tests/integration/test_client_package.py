"""The client package installed ALONE in a clean venv (an older Python and Celery than the
workers'), enqueuing to a real prefork worker of this repository that runs with a queue prefix,
with request ids carried into the worker's JSON log lines and on to the sink batches."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.csv_fixtures import SERVICE_ID, TEMPLATE_ID, broker_messages, csv_text, sms_rows, upload
from tests.letters_fixtures import put_letter
from tests.package_fixtures import XDIST_GROUP, clean_venv, uv_install

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group(XDIST_GROUP)]
OLD_CELERY = "celery==5.3.6"
PREFIX = "x-"

SCRIPT = r"""
import json, sys
import celery
from notify_worker_client import InvalidArgument, NotifyClient

cfg = json.loads(sys.argv[1])
client = NotifyClient(
    broker_url=cfg["broker"], result_backend=cfg["backend"], queue_prefix=cfg["prefix"],
    state_redis=cfg["state"],
)
out = {"celery": celery.__version__, "python": list(sys.version_info[:2])}
out["reconcile"] = client.reconcile_jobs(request_id="req-reconcile").get(timeout=60)
job = client.process_csv(
    cfg["service"], cfg["upload"], template_id=cfg["template"], template_type="sms",
    placeholders=["name"], notification_count=30, request_id="req-csv-1",
)
out["csv"] = job.get(timeout=60)
out["csv_task_id"] = job.id
out["state"] = client.job_state(cfg["upload"])
out["letter"] = client.move_transient_letter(
    cfg["letter_service"], cfg["letter_upload"], reference="ABC123", postage="second",
    created_at="2024-07-15T10:00:00Z",
).get(timeout=60)
out["sweep"] = client.sweep_bucket("transient-letters", dry_run=True).get(timeout=60)
try:
    client.move_transient_letter(
        cfg["service"], cfg["upload"], reference="lower", postage="second",
        created_at="2026-01-01T10:00:00",
    )
except InvalidArgument as error:
    out["refused"] = error.argument
print(json.dumps(out))
"""


def _base_python() -> str:
    """The oldest Python the client supports, when this machine has it (pyenv)."""
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3")))
    return found[-1] if found else sys.executable


@pytest.fixture(scope="session")
def client_python(tmp_path_factory: pytest.TempPathFactory, built: Path) -> Path:
    """A venv with only the client package (the wheel the packaging test checks too), an older
    Celery and redis (once per session)."""
    python = clean_venv(tmp_path_factory.mktemp("client-venv") / "venv", _base_python())
    (client,) = built.glob("notify_worker_client-*.whl")
    uv_install(python, f"{client}[redis]", OLD_CELERY, "redis>=4.5,<5")
    return python


def test_the_client_alone_enqueues_to_a_prefixed_worker_with_request_ids(
    client_python, prefork_worker, s3, redis_client
):
    from worker.runtime.settings import get_worker_settings

    settings = get_worker_settings()
    names = ("csv-batches", "csv-batches-bulk", "periodic", "letters", "cleanup")
    queues = [f"{PREFIX}{name}" for name in names]
    # Not the sink's queue: its batches stay in the broker to be looked at.
    worker = prefork_worker(
        concurrency=1, queues=",".join(queues), NOTIFY_QUEUE_PREFIX=PREFIX, NOTIFY_LOG_FORMAT="json"
    )
    upload_id = upload(s3, csv_text(["phone number", "name"], sms_rows(30, bad_every=10)))
    letter = put_letter(s3)
    cfg = {
        "broker": settings.redis_url,
        "backend": settings.result_backend_url,
        "state": settings.state_redis_url,
        "prefix": PREFIX,
        "service": SERVICE_ID,
        "upload": upload_id,
        "template": TEMPLATE_ID,
        "letter_service": letter.service_id,
        "letter_upload": letter.upload_id,
    }
    run = subprocess.run(
        [str(client_python), "-c", SCRIPT, json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={"PATH": os.environ["PATH"]},  # nothing of the workers' settings leaks in
    )
    assert run.returncode == 0, run.stderr + worker.log()[-3000:]
    out = json.loads(run.stdout)
    assert out["celery"] == OLD_CELERY.split("==")[1]
    assert out["python"] == list(sys.version_info[:2]) or out["python"] == [3, 9]
    assert out["reconcile"]["status"] == "ok"
    assert out["csv"]["status"] == "ok", out["csv"]
    assert out["refused"] == "reference"
    assert out["letter"]["status"] == "ok" and not out["letter"]["already_moved"]
    assert out["sweep"]["status"] == "ok" and out["sweep"]["dry_run"] is True
    # Recorded as queued in the workers' Redis, on the prefixed queue; the worker finished it.
    assert out["state"]["queue"] == f"{PREFIX}csv-batches"
    assert out["state"]["status"] == "finished"

    # The sink batches went to the prefixed sink queue, carrying the request id.
    batches = broker_messages(settings.redis_url, f"{PREFIX}database-tasks")
    assert batches, "no sink batch published"
    assert all(b["headers"].get("notify_request_id") == "req-csv-1" for b in batches)
    assert sum(len(b["kwargs"]["batch"]["rows"]) for b in batches) == 27  # 3 rows refused
    # Nothing went to the unprefixed queues.
    plain = redis.Redis.from_url(settings.redis_url)
    assert plain.llen("csv-batches") == 0 and plain.llen("database-tasks") == 0

    # Every log line of the job's task carries the request id.
    deadline = time.monotonic() + 10
    mine: list[dict] = []
    while time.monotonic() < deadline and not mine:
        lines = [json.loads(x) for x in worker.log().splitlines() if x.startswith("{")]
        mine = [r for r in lines if r.get("task_id") == out["csv_task_id"]]
        time.sleep(0.2)
    assert mine, worker.log()[-3000:]
    assert all(r["request_id"] == "req-csv-1" for r in mine)
    assert all(r["upload_id"] == upload_id for r in mine)
    # Lines outside any task have none.
    assert all(r["request_id"] == "-" for r in lines if r.get("task_id") == "-")
    plain.delete(f"{PREFIX}database-tasks", f"{PREFIX}database-tasks-bulk")
