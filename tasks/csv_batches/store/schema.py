"""Creating and migrating the notification schema (Alembic, migrations shipped in the package).

``upgrade`` takes a transaction-level advisory lock before Alembic reads the current revision,
and runs every pending migration inside that transaction: two upgrades started at once run one
after the other (the second finds the schema at head and does nothing), and a failed one leaves
the schema as it was. Running it again when nothing is pending changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from worker.runtime.database import (
    DatabaseSettings,
    database_errors,
    require_settings,
    sqlalchemy_url,
)

SCRIPT_LOCATION = "tasks.csv_batches.store:migrations"
# pg_advisory_xact_lock key: any fixed 64-bit number, the same in every process.
UPGRADE_LOCK_KEY = 0x6E6F74696679  # "notify"

# Alembic's INFO lines (plugins, "Context impl") say nothing an operator needs; the caller
# reports the revisions before and after.
logging.getLogger("alembic").setLevel(logging.WARNING)


@dataclass(frozen=True)
class UpgradeResult:
    before: str | None
    after: str | None
    head: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _config():  # -> alembic.config.Config
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _engine(settings: DatabaseSettings):  # -> sqlalchemy.Engine
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from worker.runtime.database import connect_kwargs

    return create_engine(
        sqlalchemy_url(settings.url), poolclass=NullPool, connect_args=connect_kwargs(settings)
    )


def _current(connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def current_revision(settings: DatabaseSettings | None = None) -> str | None:
    """The database's schema revision (None: never upgraded)."""
    settings = settings or require_settings()
    with database_errors("reading the schema revision", settings):
        engine = _engine(settings)
        try:
            with engine.connect() as connection:
                return _current(connection)
        finally:
            engine.dispose()


def upgrade(settings: DatabaseSettings | None = None) -> UpgradeResult:
    """Bring the schema to the newest revision; safe to run twice, or twice at once."""
    from alembic import command
    from sqlalchemy import text

    settings = settings or require_settings()
    config = _config()
    with database_errors("upgrading the schema", settings):
        engine = _engine(settings)
        try:
            with engine.begin() as connection:
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK_KEY}
                )
                before = _current(connection)
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                after = _current(connection)
        finally:
            engine.dispose()
    return UpgradeResult(before=before, after=after, head=head_revision())
