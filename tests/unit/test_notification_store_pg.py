"""The PostgreSQL notification store against a real PostgreSQL (its own database per module):
bulk idempotent saves, the job's progress hint, bad-data batches, error translation, the pool
across a fork, the schema upgrade run twice and twice at once, and the CLI."""

from __future__ import annotations

import json
import multiprocessing
import threading
import uuid

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import errors as pg

from storage.errors import ConfigurationError, InvalidInput, TransientError
from tasks.csv_batches import sink
from tasks.csv_batches import state as st
from tasks.csv_batches.store import notification_store
from tasks.csv_batches.store.batch import parse_batch
from tasks.csv_batches.store.postgres import MAX_RECIPIENT_CHARS, PostgresStore, rows_json
from tests.db_fixtures import (
    _admin_connection,
    _with_database,
    server_url,
    table_rows,
)
from worker.runtime import database

SERVICE_ID = str(uuid.uuid4())
TEMPLATE_ID = str(uuid.uuid4())


def make_batch(upload_id: str, start: int = 1, count: int = 1000, kind: str = "sms") -> dict:
    rows = []
    for number in range(start, start + count):
        recipient = f"+4477009{number:05d}" if kind == "sms" else f"user{number}@example.com"
        rows.append(
            {
                "notification_id": str(uuid.uuid5(uuid.UUID(upload_id), str(number))),
                "row_number": number,
                "recipient": recipient,
                "personalisation": {"phone number": recipient, "name": f"Ann é {number}"},
            }
        )
    return {
        "service_id": SERVICE_ID,
        "upload_id": upload_id,
        "template_id": TEMPLATE_ID,
        "template_type": kind,
        "sender_id": None,
        "rows": rows,
    }


def count_and_distinct(pg_url: str, upload_id: str) -> tuple[int, int]:
    return table_rows(
        pg_url,
        "SELECT count(*), count(DISTINCT id) FROM notifications WHERE job_id = %s",
        upload_id,
    )[0]


def test_the_database_url_picks_the_store(pg_url, monkeypatch):
    assert notification_store().name == "postgresql"
    monkeypatch.delenv("NOTIFY_DATABASE_URL")
    assert notification_store().name == "redis"


def test_a_batch_is_stored_once_with_every_column(pg_url, redis_client):
    upload_id = str(uuid.uuid4())
    redis_client.hset(st.job_key(upload_id), mapping={"status": "finished", "stored": 0})
    first, second = make_batch(upload_id, 1, 1000), make_batch(upload_id, 1001, 500)
    assert sink.save_batch(first) == {
        "status": "ok",
        "upload_id": upload_id,
        "rows": 1000,
        "stored": 1000,
    }
    assert sink.save_batch(second)["stored"] == 500
    # Delivered again (a redelivery, a re-send): nothing new, nothing counted twice.
    assert sink.save_batch(first)["stored"] == 0
    assert sink.save_batch(second)["stored"] == 0
    assert count_and_distinct(pg_url, upload_id) == (1500, 1500)
    assert PostgresStore().stored_count(upload_id) == 1500
    assert redis_client.hget(st.job_key(upload_id), "stored") == "1500"
    assert float(redis_client.hget(st.job_key(upload_id), "stored_at")) > 0

    seven = str(uuid.uuid5(uuid.UUID(upload_id), "7"))
    [row] = table_rows(
        pg_url,
        "SELECT id::text, job_id::text, job_row_number, service_id::text, template_id::text, "
        'notification_type, "to", personalisation, status, created_at IS NOT NULL '
        "FROM notifications WHERE id = %s",
        seven,
    )
    assert row == (
        seven,
        upload_id,
        7,
        SERVICE_ID,
        TEMPLATE_ID,
        "sms",
        "+447700900007",
        {"phone number": "+447700900007", "name": "Ann é 7"},
        "created",
        True,
    )


def test_email_and_letter_batches(pg_url):
    upload_id = str(uuid.uuid4())
    assert sink.save_batch(make_batch(upload_id, 1, 10, kind="email"))["stored"] == 10
    letter = make_batch(str(uuid.uuid4()), 1, 1)
    letter["template_type"] = "letter"
    letter["rows"][0]["recipient"] = "A Person\n1 The Street\nSW1A 1AA"
    assert sink.save_batch(letter)["stored"] == 1
    [(to,)] = table_rows(
        pg_url, 'SELECT "to" FROM notifications WHERE job_id = %s', letter["upload_id"]
    )
    assert to == "A Person\n1 The Street\nSW1A 1AA"


def test_no_job_state_in_redis_is_fine(pg_url, redis_client):
    upload_id = str(uuid.uuid4())
    assert sink.save_batch(make_batch(upload_id, 1, 3))["stored"] == 3
    assert not redis_client.exists(st.job_key(upload_id))  # never recreated


@pytest.mark.parametrize(
    ("where", "value", "problem"),
    [
        ("recipient", "+4477\x00009", "a NUL character in a value"),
        ("personalisation", {"name": "Ann\x00"}, "a NUL character in a value"),
        ("personalisation", {"na\x00me": "Ann"}, "a NUL character in a value"),
        ("recipient", "x" * (MAX_RECIPIENT_CHARS + 1), "recipient longer than 1,000 characters"),
        ("personalisation", ["not", "an", "object"], "personalisation is not an object"),
        ("row_number", 0, "row_number is not a whole number from 1"),
    ],
)
def test_bad_data_fails_only_that_batch(pg_url, where, value, problem):
    upload_id = str(uuid.uuid4())
    bad = make_batch(upload_id, 1, 100)
    for index in (4, 49):  # rows 5 and 50
        bad["rows"][index][where] = value
    with pytest.raises(InvalidInput) as caught:
        sink.save_batch(bad)
    error = caught.value
    assert error.code == "invalid_batch_data"
    assert problem in error.message
    if where != "row_number":
        assert "rows 5, 50 (2)" in error.message
    assert "+4477" not in error.message and "Ann" not in error.message  # no values
    assert count_and_distinct(pg_url, upload_id) == (0, 0)  # nothing of it stored
    # The next batch of the same job is not poisoned.
    assert sink.save_batch(make_batch(upload_id, 101, 100))["stored"] == 100


def test_a_literal_backslash_u0000_in_a_cell_is_stored(pg_url):
    upload_id = str(uuid.uuid4())
    batch = make_batch(upload_id, 1, 2)
    batch["rows"][0]["personalisation"]["name"] = "C:\\u0000"
    assert sink.save_batch(batch)["stored"] == 2
    [(stored,)] = table_rows(
        pg_url,
        "SELECT personalisation->>'name' FROM notifications WHERE job_id = %s "
        "AND job_row_number = 1",
        upload_id,
    )
    assert stored == "C:\\u0000"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"template_id": "nope"}, "invalid_id"),
        ({"template_type": "fax"}, "invalid_batch"),
        ({"upload_id": "x"}, "invalid_id"),
        ({"rows": []}, "invalid_batch"),
    ],
)
def test_a_malformed_batch_is_refused_before_the_database(pg_url, change, code):
    batch = {**make_batch(str(uuid.uuid4()), 1, 2), **change}
    with pytest.raises(InvalidInput) as caught:
        sink.save_batch(batch)
    assert caught.value.code == code


def test_driver_errors_are_translated():
    settings = database.DatabaseSettings("postgresql://u:secret@db:5432/n", 2, 10, 1000)
    cases = {
        pg.AdminShutdown("terminating connection due to administrator command"): TransientError,
        pg.SerializationFailure("could not serialize access"): TransientError,
        pg.DeadlockDetected("deadlock detected"): TransientError,
        psycopg.OperationalError("server closed the connection unexpectedly"): TransientError,
        psycopg.InterfaceError("the connection is closed"): TransientError,
        pg.StringDataRightTruncation("value too long: 'secret-recipient'"): InvalidInput,
        pg.CharacterNotInRepertoire("invalid byte sequence"): InvalidInput,
        pg.CheckViolation("violates check constraint"): InvalidInput,
        pg.UndefinedTable('relation "notifications" does not exist'): ConfigurationError,
    }
    for raw, expected in cases.items():
        translated = database.translate(raw, "saving", settings)
        assert isinstance(translated, expected), (raw, translated)
        assert "secret" not in translated.message  # neither the password nor a value
        assert "u:**@db:5432/n" in translated.message
        assert translated.retryable is (expected is TransientError)
    other = ValueError("x")
    assert database.translate(other, "saving", settings) is other


def test_an_unreachable_database_is_transient(pg_url, monkeypatch):
    monkeypatch.setenv("NOTIFY_DATABASE_URL", "postgresql://postgres:pw@127.0.0.1:1/none")
    monkeypatch.setenv("NOTIFY_DATABASE_POOL_TIMEOUT_SECONDS", "1")
    try:
        with pytest.raises(TransientError) as caught:
            sink.save_batch(make_batch(str(uuid.uuid4()), 1, 1))
        assert caught.value.code == "database_unavailable"
        assert "pw" not in caught.value.message
    finally:
        database.reset_pool()


def test_a_bad_url_is_a_configuration_error(monkeypatch):
    for url in ("mysql://h/db", "postgresql://h:port/db"):
        monkeypatch.setenv("NOTIFY_DATABASE_URL", url)
        with pytest.raises(ConfigurationError):
            database.get_database_settings()
    monkeypatch.delenv("NOTIFY_DATABASE_URL")
    assert database.get_database_settings() is None


def test_a_missing_table_asks_for_db_upgrade(pg_url, monkeypatch):
    name = f"notify_test_{uuid.uuid4().hex[:12]}"
    with _admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        monkeypatch.setenv("NOTIFY_DATABASE_URL", _with_database(server_url(), name))
        with pytest.raises(ConfigurationError) as caught:
            sink.save_batch(make_batch(str(uuid.uuid4()), 1, 1))
        assert "notify-worker db upgrade" in caught.value.message
    finally:
        database.reset_pool()
        with _admin_connection() as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_a_connection_the_server_closed_is_replaced(pg_url):
    upload_id = str(uuid.uuid4())
    assert sink.save_batch(make_batch(upload_id, 1, 10))["stored"] == 10
    killed = table_rows(
        pg_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = %s AND pid <> pg_backend_pid()",
        database.APPLICATION_NAME,
    )
    assert killed and all(ok for (ok,) in killed)
    # The pool checks a connection before handing it out: the dead one is replaced.
    assert sink.save_batch(make_batch(upload_id, 11, 10))["stored"] == 10
    assert count_and_distinct(pg_url, upload_id) == (20, 20)


def _child_saves(upload_id: str, parent_pool_id: int, out: multiprocessing.Queue) -> None:
    try:
        pool = database.get_pool()
        stored = sink.save_batch(make_batch(upload_id, 1, 5))["stored"]
        out.put((id(pool) != parent_pool_id, stored))
    except Exception as error:  # reported to the parent
        out.put(("error", repr(error)))


def test_a_forked_child_makes_its_own_pool(pg_url):
    parent_pool = database.get_pool()
    upload_id = str(uuid.uuid4())
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    child = context.Process(target=_child_saves, args=(upload_id, id(parent_pool), out))
    child.start()
    result = out.get(timeout=60)
    child.join(30)
    assert result == (True, 5)
    # The parent's pool still works (the child never closed the parent's connections).
    assert database.get_pool() is parent_pool
    assert PostgresStore().stored_count(upload_id) == 5


def test_upgrade_twice_and_twice_at_once():
    from tasks.csv_batches.store.schema import current_revision, head_revision, upgrade

    name = f"notify_test_{uuid.uuid4().hex[:12]}"
    with _admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        settings = database.DatabaseSettings(_with_database(server_url(), name), 2, 10, 60_000)
        assert current_revision(settings) is None
        results, errors = [], []

        def run() -> None:
            try:
                results.append(upgrade(settings))
            except Exception as error:
                errors.append(error)

        threads = [threading.Thread(target=run) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors
        head = head_revision()
        assert sorted(r.changed for r in results) == [False, False, True]
        assert {r.after for r in results} == {head}
        again = upgrade(settings)
        assert (again.before, again.after, again.changed) == (head, head, False)
        tables = table_rows(
            settings.url,
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
        )
        assert tables == [("alembic_version",), ("notifications",)]
        indexes = {
            name
            for (name,) in table_rows(
                settings.url, "SELECT indexname FROM pg_indexes WHERE tablename = 'notifications'"
            )
        }
        assert indexes == {"notifications_pkey", "notifications_job_id_row_number_idx"}
    finally:
        with _admin_connection() as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_db_commands(pg_url, monkeypatch):
    from worker.cli import main

    runner = CliRunner()
    shown = runner.invoke(main, ["db", "upgrade", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["changed"] is False
    current = runner.invoke(main, ["db", "current"])
    assert current.exit_code == 0 and "up to date" in current.output
    monkeypatch.delenv("NOTIFY_DATABASE_URL")
    unset = runner.invoke(main, ["db", "upgrade"])
    assert unset.exit_code == 2 and "NOTIFY_DATABASE_URL is not set" in unset.output


def test_parse_batch_keeps_rows_as_sent():
    upload_id = str(uuid.uuid4())
    parsed = parse_batch(make_batch(upload_id, 3, 2))
    assert (parsed.upload_id, parsed.first_row(), len(parsed.rows)) == (upload_id, 3, 2)


def test_a_partly_stored_batch_adds_only_its_missing_rows(pg_url):
    upload_id = str(uuid.uuid4())
    assert sink.save_batch(make_batch(upload_id, 1, 500))["stored"] == 500
    # A re-sent batch overlapping the stored rows: the plain insert fails, the second stores
    # only the missing 500.
    assert sink.save_batch(make_batch(upload_id, 1, 1000))["stored"] == 500
    assert count_and_distinct(pg_url, upload_id) == (1000, 1000)
    twice = make_batch(upload_id, 1001, 10)
    twice["rows"] += twice["rows"][:3]  # the same ids twice in one batch
    assert sink.save_batch(twice)["stored"] == 10


def test_the_same_batch_stored_at_the_same_moment_is_stored_once(pg_url):
    upload_id = str(uuid.uuid4())
    batch = make_batch(upload_id, 1, 1000)
    results: list[int] = []
    barrier = threading.Barrier(4)

    def save() -> None:
        barrier.wait(10)
        results.append(sink.save_batch(batch)["stored"])

    threads = [threading.Thread(target=save) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [0, 0, 0, 1000]
    assert count_and_distinct(pg_url, upload_id) == (1000, 1000)


def test_rows_json_is_the_standard_json_of_the_rows():
    rows = [
        {"notification_id": "a", "row_number": 1, "recipient": 'Zoë "x" \\', "personalisation": {}},
        {
            "notification_id": "b",
            "row_number": 10**20,
            "recipient": "\u2028\x00",
            "personalisation": {"k": [1.5, None]},
        },
    ]
    assert json.loads(rows_json(rows)) == rows
    # Text msgspec will not write as UTF-8 (a lone surrogate) goes the standard library's way.
    odd = [{"recipient": "\ud800"}]
    assert rows_json(odd) == json.dumps(odd, ensure_ascii=False, separators=(",", ":"))
