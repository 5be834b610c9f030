"""Shared helpers for the operations tests (backfill, status, dead letters, logs, the demo).

* ``invoke`` — the CLI in process; ``run_demo`` — ``notify-worker demo`` in a subprocess;
* ``captured`` (fixture) — the log records of the test, with the task context of each line.

Registered through ``pytest_plugins`` in tests/conftest.py; import the helpers explicitly.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result


def invoke(*args: str, input: str | None = None) -> Result:
    """Run ``notify-worker ARGS`` in process (CliRunner) and restore the logging set-up.

    The CLI installs a log handler on the runner's temporary stderr; without the restore, later
    log lines would go to a closed stream.
    """
    from worker.cli import main

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def run_demo(workdir: Path, redis_db: int, **env: str) -> subprocess.CompletedProcess[str]:
    """``notify-worker demo`` in a subprocess, with its own embedded S3 and its own Redis
    database (the session's thread worker must not take the demo's tasks); exit code checked."""
    environ = {**os.environ, **env}
    environ.pop("S3_ENDPOINT_URL", None)  # the demo brings its own embedded S3
    environ["REDIS_URL"] = environ["REDIS_URL"].rsplit("/", 1)[0] + f"/{redis_db}"
    out = subprocess.run(
        [sys.executable, "-m", "worker", "demo", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=400,
        env=environ,
        check=False,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-6000:]
    return out


class Capture(logging.Handler):
    """Keeps every record at INFO and above, with the task context filled in."""

    def __init__(self) -> None:
        from worker.runtime.logs import ContextFilter

        super().__init__(logging.INFO)
        self.addFilter(ContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)  # renders exc text and the message, as a real handler would
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
