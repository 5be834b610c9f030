"""``notify-worker health``: readiness against real Redis and moto's server over HTTP, liveness
against a real prefork worker (healthy, stalled with SIGSTOP, stopped)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import worker_env
from worker.local.servers import free_port

pytestmark = pytest.mark.integration


def health(mode: str, **env: str) -> tuple[int, dict]:
    done = subprocess.run(
        [sys.executable, "-m", "worker", "health", f"--{mode}"],
        env=worker_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout + done.stderr  # one JSON line, nothing else
    return done.returncode, json.loads(lines[0])


def test_readiness_ok_when_redis_and_every_bucket_answer(s3, moto_endpoint):
    code, report = health("readiness", S3_ENDPOINT_URL=moto_endpoint)
    assert (code, report["status"], report["failed"]) == (0, "ok", [])
    assert report["redis"] == "ok" and report["buckets"] == 10


def test_readiness_names_a_missing_bucket(s3, moto_endpoint):
    code, report = health(
        "readiness", S3_ENDPOINT_URL=moto_endpoint, S3_BUCKET_MOU="no-such-bucket-here"
    )
    assert code == 1 and report["status"] == "failed"
    assert [(f["what"], f["purpose"], f["bucket"]) for f in report["failed"]] == [
        ("bucket", "mou", "no-such-bucket-here")
    ]


def test_readiness_names_the_wrong_region(s3, moto_endpoint):
    code, report = health("readiness", S3_ENDPOINT_URL=moto_endpoint, AWS_REGION="eu-west-2")
    assert code == 1
    assert len(report["failed"]) == 10
    assert all("eu-west-1 but AWS_REGION is eu-west-2" in f["message"] for f in report["failed"])


def test_readiness_names_redis_when_it_does_not_answer(s3, moto_endpoint):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    code, report = health("readiness", S3_ENDPOINT_URL=moto_endpoint, REDIS_URL=dead)
    assert code == 1
    assert [f["what"] for f in report["failed"]] == ["redis"]
    assert "REDIS_URL" in report["failed"][0]["message"]


def test_liveness_follows_the_worker(prefork_worker, tmp_path):
    alive = str(tmp_path / "worker.alive")
    env = {"NOTIFY_LIVENESS_FILE": alive, "NOTIFY_LIVENESS_MAX_AGE_SECONDS": "7"}
    code, report = health("liveness", **env)
    assert code == 1 and "no worker" in report["failed"][0]["message"]

    handle = prefork_worker(**env)
    started = time.monotonic()
    code, report = health("liveness", **env)
    assert (code, report["pid"]) == (0, handle.pid)
    assert time.monotonic() - started < 5  # answers at once: no broadcast, no broker round trip

    # A stalled main process (its event loop stops): the heartbeat goes stale.
    os.kill(handle.pid, signal.SIGSTOP)
    try:
        time.sleep(9)
        code, report = health("liveness", **env)
        assert code == 1 and "stalled" in report["failed"][0]["message"]
    finally:
        os.kill(handle.pid, signal.SIGCONT)
    deadline = time.monotonic() + 15
    while health("liveness", **env)[0] != 0:
        assert time.monotonic() < deadline, "the heartbeat did not resume"
        time.sleep(1)

    handle.stop()
    code, report = health("liveness", **env)
    assert code == 1 and report["status"] == "failed"
