"""Liveness from the heartbeat file: fresh, stale, process gone, missing, garbage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from worker.runtime.health import check_liveness, max_age, write_heartbeat


def env_for(path) -> dict[str, str]:
    return {"NOTIFY_LIVENESS_FILE": str(path), "NOTIFY_LIVENESS_MAX_AGE_SECONDS": "20"}


def test_fresh_heartbeat_of_a_live_process_is_ok(tmp_path):
    path = tmp_path / "alive"
    write_heartbeat(str(path), "w1@host")
    report = check_liveness(env_for(path))
    assert report.ok and report.as_dict()["pid"] == os.getpid()
    assert json.loads(report.line())["status"] == "ok"


def test_stale_heartbeat_fails(tmp_path):
    path = tmp_path / "alive"
    write_heartbeat(str(path), "w1@host")
    report = check_liveness(env_for(path), now=time.time() + 21)
    assert not report.ok and "stalled" in report.failed[0]["message"]


def test_heartbeat_of_a_dead_process_fails(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    path = tmp_path / "alive"
    path.write_text(json.dumps({"pid": int(done.stdout), "hostname": "x", "at": time.time()}))
    report = check_liveness(env_for(path))
    assert not report.ok and "is gone" in report.failed[0]["message"]


def test_missing_or_garbage_file_fails(tmp_path):
    assert "no worker" in check_liveness(env_for(tmp_path / "none")).failed[0]["message"]
    (tmp_path / "bad").write_text("{not json")
    assert "unreadable" in check_liveness(env_for(tmp_path / "bad")).failed[0]["message"]


def test_max_age_never_below_the_heartbeat_interval(tmp_path):
    assert max_age({}) == 30
    report = check_liveness({"NOTIFY_LIVENESS_MAX_AGE_SECONDS": "1"})
    assert report.failed[0]["what"] == "configuration"
    assert "at least 6" in report.failed[0]["message"]
