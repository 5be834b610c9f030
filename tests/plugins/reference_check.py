"""A fake reference check for the cleanup tests (``NOTIFY_REFERENCE_CHECK``).

``check`` says a key is referenced when it is in ``REFERENCED`` (in-process tests) or listed,
one per line, in the file named by ``FAKE_REFERENCED_KEYS_FILE`` (worker subprocesses).
``FAKE_REFERENCE_CHECK_DELAY`` (seconds) slows every call, so a crash test can kill a worker
between batches. Every call is recorded in ``CALLS`` as ``(purpose, number of keys)``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

REFERENCED: set[str] = set()
CALLS: list[tuple[str, int]] = []


def _from_file() -> set[str]:
    path = os.environ.get("FAKE_REFERENCED_KEYS_FILE")
    if not path:
        return set()
    return set(Path(path).read_text().split())


def check(purpose: str, keys: list[str]) -> set[str]:
    CALLS.append((purpose, len(keys)))
    delay = float(os.environ.get("FAKE_REFERENCE_CHECK_DELAY") or 0)
    if delay:
        time.sleep(delay)
    referenced = REFERENCED | _from_file()
    return {key for key in keys if key in referenced}


def broken(purpose: str, keys: list[str]) -> set[str]:
    raise RuntimeError("the web app's database is unreachable")


def wrong_type(purpose: str, keys: list[str]) -> str:
    return "not a set"
