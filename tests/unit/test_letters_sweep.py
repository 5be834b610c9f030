"""The transient-letters sweep: young letters judged from the listing, old ones HEADed."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tasks.letters.sweep import sweep_transient_letters
from tests.letters_fixtures import (
    SECRETS,
    age_in_moto,
    letter_metadata,
    put_letter,
    recorded,
    transient_bucket,
)


@pytest.fixture
def client(letters_s3: Any) -> Any:
    return letters_s3


def _old_letter(client: Any, hours: float, **kwargs: Any) -> str:
    letter = put_letter(client, **kwargs)
    age_in_moto(transient_bucket(), letter.key, hours)
    return letter.key


def test_empty_bucket(client):
    result = sweep_transient_letters(client=client)
    assert result["status"] == "ok"
    assert result["waiting"] == 0
    assert result["by_status"] == {}
    assert result["oldest"] is None
    assert result["alert_hours"] == 24


def test_reports_old_letters_by_status_and_skips_young_ones_without_a_head(client, caplog):
    for _ in range(3):
        put_letter(client)  # young: never HEADed
    _old_letter(client, 30)
    _old_letter(client, 50)
    _old_letter(client, 25, status="invalid")
    _old_letter(client, 26, metadata=letter_metadata(None))
    _old_letter(client, 27, metadata=letter_metadata("Secret Recipient"))  # free text
    client.put_object(Bucket=transient_bucket(), Key="stray.txt", Body=b"?")
    age_in_moto(transient_bucket(), "stray.txt", 100)

    caplog.set_level(logging.INFO, logger="tasks.letters.sweep")
    with recorded(client) as log:
        result = sweep_transient_letters(client=client)

    assert result["waiting"] == 6
    assert result["by_status"] == {"invalid": 1, "not_a_letter": 1, "unknown": 2, "valid": 2}
    assert result["scanned"] == 9
    assert result["heads"] == 5
    assert log.operations == ["ListObjectsV2"] + ["HeadObject"] * 5
    assert result["oldest"] is not None
    [line] = [r.getMessage() for r in caplog.records if r.name == "tasks.letters.sweep"]
    assert "waiting over 24h: 6" in line
    assert "valid=2" in line
    for secret in SECRETS:
        assert secret not in repr(result) + line


def test_oldest_is_the_oldest_waiting_letter(client):
    from datetime import UTC, datetime, timedelta

    _old_letter(client, 30)
    _old_letter(client, 72)
    result = sweep_transient_letters(client=client)
    oldest = datetime.fromisoformat(result["oldest"].replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - timedelta(hours=72) - oldest) < timedelta(minutes=1)


def test_threshold_and_moment_can_be_given(client):
    put_letter(client)
    put_letter(client)
    assert sweep_transient_letters(client=client, alert_hours=1)["waiting"] == 0
    later = sweep_transient_letters(client=client, as_of="2999-01-01T00:00:00Z")
    assert later["waiting"] == 2
    assert later["as_of"] == "2999-01-01T00:00:00Z"


def test_threshold_comes_from_the_environment(client, monkeypatch):
    from worker.runtime.settings import reload_worker_settings

    _old_letter(client, 5)
    monkeypatch.setenv("NOTIFY_TRANSIENT_LETTER_ALERT_HOURS", "4")
    reload_worker_settings()
    try:
        result = sweep_transient_letters(client=client)
    finally:
        monkeypatch.delenv("NOTIFY_TRANSIENT_LETTER_ALERT_HOURS")
        reload_worker_settings()
    assert result["alert_hours"] == 4
    assert result["waiting"] == 1


def test_listing_is_paginated(client):
    for _ in range(5):
        _old_letter(client, 30)
    with recorded(client) as log:
        result = sweep_transient_letters(client=client, page_size=2)
    assert result["waiting"] == 5
    assert log.operations.count("ListObjectsV2") == 3


def test_letter_moved_during_the_sweep_is_not_counted(client):
    key = _old_letter(client, 30)
    original = client.head_object

    class MovesDuringSweep:
        def __getattr__(self, name: str) -> Any:
            if name == "head_object":

                def head_object(**kwargs: Any) -> Any:
                    client.delete_object(Bucket=transient_bucket(), Key=key)
                    return original(**kwargs)

                return head_object
            return getattr(client, name)

    result = sweep_transient_letters(client=MovesDuringSweep())
    assert result["waiting"] == 0
    assert result["heads"] == 1
