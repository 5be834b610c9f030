"""The dead-letter store: poison messages that hit the redelivery cap, or exhausted retries.

One Redis hash, ``notify:deadletter``, field = task id, value = JSON. Replaying sends the task
again by name, with its original keyword arguments and a fresh task id (the old id has spent
its redelivery budget).

A task whose arguments carry recipients or personalisation (a sink batch) registers a
*reference* (``register_reference``): what is stored is the task to replay with and arguments
that say where the data can be rebuilt from (the job, its row range, the file version), never
the data itself. Replay sends that task.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from celery import current_app

from worker.runtime.redis_state import get_redis, key
from worker.runtime.settings import get_worker_settings

DEADLETTER_KEY = key("deadletter")

# task name -> function(kwargs) -> (task to replay with, its kwargs: no personal data)
Reference = Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]
_REFERENCES: dict[str, Reference] = {}


def register_reference(task_name: str, make: Reference) -> None:
    """Store dead letters of ``task_name`` as ``make(kwargs)`` instead of its kwargs."""
    _REFERENCES[task_name] = make


def stored_form(task_name: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The task and keyword arguments a dead letter of ``task_name`` keeps."""
    make = _REFERENCES.get(task_name)
    return make(kwargs) if make is not None else (task_name, kwargs)


@dataclass
class DeadLetter:
    task_id: str
    task: str
    queue: str | None
    kwargs: dict[str, Any]
    reason: str
    error_code: str
    recorded_at: float = field(default_factory=time.time)
    failed_task: str | None = None  # when ``task`` is a replay reference: the task that failed

    def summary(self) -> str:
        """One line for humans: ids and argument names, never argument values."""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.recorded_at))
        names = ",".join(sorted(self.kwargs))
        return f"{when}Z {self.task_id} {self.task} [{names}] {self.error_code}: {self.reason}"


def record(entry: DeadLetter) -> None:
    r = get_redis()
    with r.pipeline() as pipe:
        pipe.hset(DEADLETTER_KEY, entry.task_id, json.dumps(asdict(entry)))
        pipe.expire(DEADLETTER_KEY, get_worker_settings().state_ttl_seconds)
        pipe.execute()


def entries() -> list[DeadLetter]:
    raw = get_redis().hgetall(DEADLETTER_KEY)
    found = [DeadLetter(**json.loads(v)) for v in raw.values()]
    return sorted(found, key=lambda e: e.recorded_at)


def count() -> int:
    return int(get_redis().hlen(DEADLETTER_KEY))


def replay(task_ids: list[str] | None = None, *, app: Any = None) -> list[tuple[str, str]]:
    """Send dead letters again (all when ``task_ids`` is None); returns (old id, new id)."""
    app = app or current_app
    r = get_redis()
    replayed = []
    for entry in entries():
        if task_ids is not None and entry.task_id not in task_ids:
            continue
        options = {"queue": entry.queue} if entry.queue else {}
        result = app.send_task(entry.task, kwargs=entry.kwargs, **options)
        r.hdel(DEADLETTER_KEY, entry.task_id)
        replayed.append((entry.task_id, result.id))
    return replayed
