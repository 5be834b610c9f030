"""`notify-worker demo` runs every workflow through a real worker and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_runs_every_workflow(tmp_path):
    env = dict(os.environ)
    env.pop("S3_ENDPOINT_URL", None)  # the demo brings its own embedded S3
    # Its own Redis database: the session's thread worker must not take the demo's tasks.
    env["REDIS_URL"] = env["REDIS_URL"].rsplit("/", 1)[0] + "/7"
    out = subprocess.run(
        [sys.executable, "-m", "worker", "demo", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
        check=False,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-6000:]
    for line in [
        "CSV job (sms)",
        "ok: 4865 rows dispatched, 135",
        "contact list job (email)",
        "ok: 390 rows dispatched, 10 invalid",
        "8 moved, 2 skipped (invalid), 0",
        "report job-outcome",
        "ok: 5000 rows",
        "report uploads",
        "report storage-usage",
        "report notifications",
        "ok: 4865 rows",
        "cleanup logo (as of +8 days)",
        "ok: 2 deleted, 1 kept",
        "cleanup mou",
        "protected",
        # From a real scrape of the demo worker's metrics: the same figures.
        "metrics http://127.0.0.1:",
        "CSV rows dispatched 5255, invalid 145",
        "letters moved 8",
        "objects deleted 5 (csv-upload 1, logo 2, transient-letters 2)",
    ]:
        assert line in text, f"{line!r} missing from the demo output:\n{text[-6000:]}"
    assert "problem:" not in text
