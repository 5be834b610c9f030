"""The beat schedule, in one place.

Run exactly one active scheduler: ``notify-worker beat`` uses RedBeat, whose Redis lock
(``notify:beat:lock``, 60 s timeout) lets a second beat stand by without sending anything.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from storage.buckets import REGISTRY, CleanupRule
from worker import queues

CLEANUP_HOUR = 1  # 01:xx UTC, when the services are quiet
CLEANUP_STAGGER_MINUTES = 7


def cleanup_purposes() -> list[str]:
    """Purposes the nightly cleanup sweeps (never the protected ones)."""
    return [p for p, spec in REGISTRY.items() if spec.cleanup is not CleanupRule.PROTECTED]


def beat_schedule() -> dict[str, dict[str, Any]]:
    schedule: dict[str, dict[str, Any]] = {
        "reconcile-jobs": {
            "task": queues.JOBS_RECONCILE,
            "schedule": 60.0,
            "options": {"queue": queues.PERIODIC, "expires": 55},
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
