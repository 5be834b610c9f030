"""A private PostgreSQL database per test module, for the notification store's tests.

Its ``pg_url`` fixture is registered for every test in tests/conftest.py (``pytest_plugins``).

The server is ``NOTIFY_TEST_DATABASE_URL`` (default the machine's, trust auth:
postgresql://postgres@127.0.0.1:5432/postgres). Each module that uses ``pg_url`` gets its own
database (``notify_test_<random>``), created, upgraded to the newest schema and dropped at the
end, so modules never see each other's rows. Without a server the tests are skipped, unless
``CI`` is set: in CI a missing database is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    return os.environ.get("NOTIFY_TEST_DATABASE_URL") or DEFAULT_SERVER_URL


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _admin_connection():
    import psycopg

    try:
        return psycopg.connect(server_url(), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"no PostgreSQL answers at NOTIFY_TEST_DATABASE_URL ({error})")
        pytest.skip(f"no PostgreSQL server answers ({type(error).__name__})")


def table_rows(url: str, sql: str, *params: object) -> list[tuple]:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="module", name="pg_url")
def pg_url_fixture() -> Iterator[str]:
    """The URL of this module's own upgraded database. Also sets ``NOTIFY_DATABASE_URL`` for
    the module (the store is on) and removes it again at the end."""
    from tasks.csv_batches.store.schema import upgrade
    from worker.runtime.database import get_database_settings, reset_pool

    name = f"notify_test_{uuid.uuid4().hex[:12]}"
    with _admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(server_url(), name)
    saved = os.environ.get("NOTIFY_DATABASE_URL")
    os.environ["NOTIFY_DATABASE_URL"] = url
    try:
        upgrade(get_database_settings())
        yield url
    finally:
        reset_pool()
        if saved is None:
            os.environ.pop("NOTIFY_DATABASE_URL", None)
        else:
            os.environ["NOTIFY_DATABASE_URL"] = saved
        with _admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def truncate(url: str) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE notifications")
