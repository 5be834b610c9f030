"""Celery tasks of the letters workflow: thin wrappers over the cores (docs/letters.md).

The base class (``worker.runtime.base.NotifyTask``) turns a ``NotifyError`` into the failed
result and retries ``TransientError`` (``LetterRetry`` included) with backoff.
"""

from __future__ import annotations

from typing import Any

from storage.errors import InvalidInput
from tasks.letters.moves import move_letter
from tasks.letters.sweep import sweep_transient_letters
from worker.runtime import queues
from worker.runtime.app import app


def _refuse_unknown(unknown: dict[str, Any]) -> None:
    if unknown:
        names = ", ".join(sorted(str(name)[:40] for name in unknown)[:5])
        raise InvalidInput(f"unknown argument(s): {names}.", code="unknown_argument")


@app.task(name=queues.LETTERS_MOVE_TRANSIENT, queue=queues.LETTERS)
def move_transient(
    service_id: str | None = None,
    upload_id: str | None = None,
    reference: str | None = None,
    postage: str | None = None,
    created_at: str | None = None,
    backup: bool = False,
    **unknown: Any,
) -> dict[str, Any]:
    """Move one transient letter into the letters-PDF bucket, exactly once."""
    _refuse_unknown(unknown)
    return move_letter(service_id, upload_id, reference, postage, created_at, backup)  # type: ignore[arg-type]


@app.task(name=queues.LETTERS_SWEEP_TRANSIENT, queue=queues.PERIODIC)
def sweep_transient(**unknown: Any) -> dict[str, Any]:
    """Report transient letters older than NOTIFY_TRANSIENT_LETTER_ALERT_HOURS, by status."""
    _refuse_unknown(unknown)
    return sweep_transient_letters()
