"""`notify-worker demo` runs every workflow through a real worker and exits 0."""

from __future__ import annotations

import pytest

from tests.ops_fixtures import run_demo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_runs_every_workflow(tmp_path):
    out = run_demo(tmp_path, redis_db=7)
    text = out.stdout + out.stderr
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
