"""Test-only tasks for real-worker tests, imported by a prefork worker with
``--include=tests.poison_tasks`` (see ``reliability_fixtures.start_worker``).

They live on their own queue, ``tests-poison``, which no default worker consumes: the session's
thread worker (in the pytest process) must never pick up a task that kills its process.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from worker.runtime.app import app
from worker.runtime.redis_state import get_redis, key

POISON_QUEUE = "tests-poison"
DIE = "tests.poison.die"
MARK = "tests.poison.mark"
EXPIRY_SECONDS = 600


def deliveries_key(marker: str) -> str:
    return key("test", "poison", marker)


def mark_key(marker: str) -> str:
    return key("test", "mark", marker)


@app.task(name=DIE, queue=POISON_QUEUE)
def die(marker: str) -> dict[str, Any]:
    """Count the delivery, then SIGKILL our own pool process: a poison message."""
    r = get_redis()
    r.incr(deliveries_key(marker))
    r.expire(deliveries_key(marker), EXPIRY_SECONDS)
    os.kill(os.getpid(), signal.SIGKILL)
    return {"status": "ok"}  # never reached


@app.task(name=MARK, queue=POISON_QUEUE)
def mark(marker: str) -> dict[str, Any]:
    """Leave a trace that this task ran (and in which process)."""
    get_redis().set(mark_key(marker), str(os.getpid()), ex=EXPIRY_SECONDS)
    return {"status": "ok", "marker": marker}
