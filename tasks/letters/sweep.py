"""The core of ``notify.letters.sweep_transient``: which letters are still waiting, and why.

ListObjectsV2 gives key, size, ETag and LastModified but no metadata, so a letter's ``status``
costs one HEAD. Only letters older than the alert age are HEADed; young ones are passed over
from the listing alone, so a healthy bucket costs one LIST per 1,000 letters and nothing more.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.client import get_client
from storage.keys import isoformat, parse_timestamp, parse_transient_letter_key
from storage.listing import iter_pages
from storage.objects import head_or_none
from tasks.letters.moves import INVALID, VALID, letter_status
from tasks.letters.settings import LetterSettings

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"  # no status, or one that is neither valid nor invalid
NOT_A_LETTER = "not_a_letter"  # a key outside the service-{id}/{id}.pdf layout


def _status_label(metadata: dict[str, str]) -> str:
    # Only known words become result keys and log text: metadata is the web app's free text.
    status = letter_status(metadata)
    return status if status in (VALID, INVALID) else UNKNOWN


def sweep_transient_letters(
    *,
    as_of: datetime | str | None = None,
    alert_hours: int | None = None,
    page_size: int = 1000,
    settings: LetterSettings | None = None,
    client: Any = None,
) -> dict[str, Any]:
    """Count transient letters older than ``alert_hours`` (default from the environment).

    Result: ``{"status": "ok", "waiting": N, "by_status": {...}, "oldest": ISO or None, ...}``.
    Read-only: it never moves or deletes anything.
    """
    settings = settings or LetterSettings.from_env()
    client = client or get_client()
    now = parse_timestamp(as_of, "as_of") if as_of is not None else datetime.now(UTC)
    hours = settings.alert_hours if alert_hours is None else int(alert_hours)
    if hours < 0:
        hours = 0
    cutoff = now - timedelta(hours=hours)

    scanned = 0
    heads = 0
    by_status: Counter[str] = Counter()
    oldest: datetime | None = None
    for page in iter_pages(settings.transient_bucket, page_size=page_size, client=client):
        for listed in page:
            scanned += 1
            if listed.last_modified > cutoff:
                continue  # young: judged from the listing alone
            if parse_transient_letter_key(listed.key) is None:
                label = NOT_A_LETTER
            else:
                heads += 1
                info = head_or_none(settings.transient_bucket, listed.key, client=client)
                if info is None:
                    continue  # moved since the listing
                label = _status_label(info.metadata)
            by_status[label] += 1
            if oldest is None or listed.last_modified < oldest:
                oldest = listed.last_modified

    waiting = sum(by_status.values())
    summary = ", ".join(f"{name}={count}" for name, count in sorted(by_status.items()))
    log = logger.warning if waiting else logger.info
    log(
        "transient letters waiting over %dh: %d (%s); scanned %d, oldest %s",
        hours,
        waiting,
        summary or "none",
        scanned,
        isoformat(oldest) if oldest else "-",
    )
    return {
        "status": "ok",
        "waiting": waiting,
        "by_status": dict(sorted(by_status.items())),
        "oldest": isoformat(oldest) if oldest else None,
        "alert_hours": hours,
        "scanned": scanned,
        "heads": heads,
        "as_of": isoformat(now),
    }
