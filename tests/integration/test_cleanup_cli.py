"""``notify-worker cleanup`` in-process (click's runner) on moto's server over HTTP."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.cleanup_fixtures import SERVICE, audit_lines, keys_in, new_id, put_aged
from worker.cli import main

pytestmark = pytest.mark.integration


def run(*args: str):
    return CliRunner().invoke(main, ["cleanup", *args], catch_exceptions=False)


def letters(count: int, days: float) -> set[str]:
    return {
        put_aged("transient-letters", f"service-{SERVICE}/{new_id()}.pdf", days)
        for _ in range(count)
    }


def test_dry_run_by_default_prints_what_would_go(s3):
    old = letters(2, 10)
    young = letters(1, 1)
    out = run("--bucket", "transient-letters", "--verbose")
    assert out.exit_code == 0, out.output
    assert "DRY RUN" in out.output
    assert "would delete" in out.output and "expired" in out.output
    for key in old:
        assert key in out.output
    assert keys_in("transient-letters") == old | young


def test_execute_deletes_and_summarises(s3):
    letters(3, 10)
    young = letters(1, 1)
    out = run("--bucket", "transient-letters", "--execute")
    assert out.exit_code == 0, out.output
    assert "EXECUTED" in out.output and "audit log: cleanup-audit/transient-letters/" in out.output
    assert "deleted 3" in out.output
    assert keys_in("transient-letters") == young
    assert len(audit_lines()) == 3


def test_max_deletions_stops_with_a_clear_message_and_non_zero_exit(s3):
    letters(4, 10)
    out = run("--bucket", "transient-letters", "--execute", "--max-deletions", "3")
    assert out.exit_code == 3
    assert "max_deletions=3" in out.output
    assert len(keys_in("transient-letters")) == 1


def test_as_of_moves_the_moment_ages_are_measured_against(s3):
    young = letters(2, 1)
    out = run("--bucket", "transient-letters", "--as-of", "2999-01-01T00:00:00", "--json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["matched"] == 2 and result["as_of"] == "2999-01-01T00:00:00Z"
    assert keys_in("transient-letters") == young


@pytest.mark.parametrize("purpose", ["mou", "letter-backups", "letters-pdf"])
def test_protected_purposes_are_refused(s3, purpose):
    put_aged(purpose, "crown.pdf", 5000)
    dry = run("--bucket", purpose)
    assert dry.exit_code == 0 and "protected" in dry.output
    executed = run(
        "--bucket", purpose, "--execute", "--max-deletions", "1000000", "--as-of", "2999-01-01"
    )
    assert executed.exit_code == 4 and "refused" in executed.output
    assert keys_in(purpose) == {"crown.pdf"}


def test_bad_arguments(s3):
    assert run("--bucket", "everything").exit_code == 2
    assert run("--bucket", "logo", "--max-deletions", "0").exit_code == 2
    bad_time = run("--bucket", "logo", "--as-of", "soon")
    assert bad_time.exit_code == 1 and "ISO 8601" in bad_time.output


def test_enqueue_and_wait(celery_worker, s3, redis_client):
    letters(2, 10)
    out = run("--bucket", "transient-letters", "--enqueue", "--wait", "--execute", "--json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["deleted"] == 2 and result["dry_run"] is False
    assert keys_in("transient-letters") == set()
