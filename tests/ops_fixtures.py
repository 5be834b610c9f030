"""Shared helpers for the operations tests (backfill, status, dead letters, logs).

Import explicitly: ``from tests.ops_fixtures import invoke``.
"""

from __future__ import annotations

import logging

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
