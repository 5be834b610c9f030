"""NOTIFY_QUEUE_PREFIX reaches every queue name a worker, beat and the sink use (read once per
process, so each case runs in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import worker_env

PROBE = """
import json, celeryconfig
from worker.runtime import beat, queues
from worker.runtime.settings import get_worker_settings
print(json.dumps({
    "queues": [q.name for q in celeryconfig.task_queues],
    "exchanges": sorted({q.exchange.name for q in celeryconfig.task_queues}),
    "default": celeryconfig.task_default_queue,
    "routes": sorted({r["queue"] for r in celeryconfig.task_routes.values()}),
    "beat": sorted({e["options"]["queue"] for e in beat.beat_schedule().values()}),
    "beat_keys": [celeryconfig.redbeat_key_prefix, celeryconfig.redbeat_lock_key],
    "sink": get_worker_settings().row_sink_queue,
    "bulk_sink": queues.bulk_queue(get_worker_settings().row_sink_queue),
}))
"""


def probe(**env: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=worker_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_every_queue_gets_the_prefix():
    found = probe(NOTIFY_QUEUE_PREFIX="staging-", NOTIFY_ROW_SINK_QUEUE="api-db")
    names = found["queues"] + [found["default"]] + found["routes"] + found["beat"]
    assert all(name.startswith("staging-") for name in names), names
    assert found["exchanges"] == sorted(found["queues"])
    assert "staging-csv-batches-bulk" in found["queues"]
    assert (found["sink"], found["bulk_sink"]) == ("staging-api-db", "staging-api-db-bulk")
    assert found["beat_keys"] == ["notify:beat:staging-", "notify:beat:staging-lock"]


def test_no_prefix_leaves_the_names_as_they_were():
    found = probe()
    assert found["default"] == "csv-batches" and found["sink"] == "database-tasks"
    assert found["beat_keys"] == ["notify:beat:", "notify:beat:lock"]


def test_a_bad_prefix_stops_the_command_naming_the_variable():
    out = subprocess.run(
        [sys.executable, "-m", "worker", "status"],
        env=worker_env(NOTIFY_QUEUE_PREFIX="two words"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    assert "NOTIFY_QUEUE_PREFIX must be" in out.stderr and "Traceback" not in out.stderr
