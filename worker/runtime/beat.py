"""The beat schedule, in one place, and the settings of its single-scheduler lock.

Run exactly one active scheduler: ``notify-worker beat`` uses RedBeat. At start-up each beat
blocks on a Redis lock (``notify:beat:lock``); only the holder sends anything, and it extends
the lock on every tick (at most ``BEAT_MAX_LOOP_INTERVAL`` seconds apart). A second beat stands
by; it takes over when the holder stops (the lock is released at once on a clean shutdown) or
dies (the lock expires after ``NOTIFY_BEAT_LOCK_TIMEOUT_SECONDS``, default 60). A holder that
could not extend its lock in time crashes on its next tick rather than send alongside the new
holder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from celery.schedules import crontab

from storage.buckets import REGISTRY
from storage.settings import env_int
from worker.runtime import queues

CLEANUP_HOUR = 1  # 01:xx UTC, when the services are quiet
CLEANUP_STAGGER_MINUTES = 7
BEAT_MAX_LOOP_INTERVAL = 5  # seconds between ticks at most: how often the lock is extended
# Environments that share one Redis (NOTIFY_QUEUE_PREFIX) each get their own schedule and lock.
KEY_PREFIX = f"notify:beat:{queues.PREFIX}"
LOCK_KEY = f"{KEY_PREFIX}lock"


def lock_timeout(environ: Mapping[str, str] | None = None) -> int:
    """How long a dead beat's lock outlives it (the standby's takeover delay).

    It must exceed the loop interval, or a healthy beat would lose its lock between ticks.
    """
    env = os.environ if environ is None else environ
    return env_int(env, "NOTIFY_BEAT_LOCK_TIMEOUT_SECONDS", 60, minimum=BEAT_MAX_LOOP_INTERVAL + 1)


def cleanup_purposes() -> list[str]:
    """Purposes the nightly cleanup visits: every one. A protected purpose's sweep deletes no
    object (the sweep refuses it first); it only aborts stale incomplete multipart uploads."""
    return list(REGISTRY)


def reconcile_interval(environ: Mapping[str, str] | None = None) -> int:
    """Seconds between reconciler runs (``NOTIFY_RECONCILE_INTERVAL_SECONDS``, default 60)."""
    env = os.environ if environ is None else environ
    return env_int(env, "NOTIFY_RECONCILE_INTERVAL_SECONDS", 60, minimum=2)


def beat_schedule() -> dict[str, dict[str, Any]]:
    every = reconcile_interval()
    schedule: dict[str, dict[str, Any]] = {
        "reconcile-jobs": {
            "task": queues.JOBS_RECONCILE,
            "schedule": float(every),
            # A tick not taken before the next one is due is dropped, not piled up.
            "options": {"queue": queues.PERIODIC, "expires": max(every - 5, 1)},
        },
        "release-due-csv-jobs": {
            "task": queues.CSV_RELEASE_DUE,
            "schedule": 30.0,
            "options": {"queue": queues.PERIODIC, "expires": 25},
        },
        "sweep-transient-letters": {
            "task": queues.LETTERS_SWEEP_TRANSIENT,
            "schedule": crontab(minute=15),
            "options": {"queue": queues.PERIODIC, "expires": 3000},
        },
    }
    for index, purpose in enumerate(cleanup_purposes()):
        minute = index * CLEANUP_STAGGER_MINUTES
        schedule[f"cleanup-{purpose}"] = {
            "task": queues.CLEANUP_SWEEP,
            "schedule": crontab(hour=CLEANUP_HOUR + minute // 60, minute=minute % 60),
            "kwargs": {"bucket": purpose, "dry_run": False},
            "options": {"queue": queues.CLEANUP, "expires": 6 * 3600},
        }
    return schedule
