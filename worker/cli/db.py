"""``notify-worker db``: the notification database's schema (PostgreSQL at NOTIFY_DATABASE_URL).

``upgrade`` creates the schema or migrates it to the newest revision: safe to run again (it
does nothing when the schema is current) and at the same time as another upgrade (they take a
lock and run one after the other). Run it before starting workers with NOTIFY_DATABASE_URL set,
and after every deployment that ships a new migration.
"""

from __future__ import annotations

import click

from worker.cli.output import console, print_json


@click.group("db")
def db_group() -> None:
    """The notification database (NOTIFY_DATABASE_URL): create and migrate its schema."""


@db_group.command("upgrade")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def db_upgrade(as_json: bool) -> None:
    """Create or migrate the schema to the newest revision (idempotent)."""
    from tasks.csv_batches.store.schema import upgrade
    from worker.runtime.database import require_settings

    settings = require_settings()
    result = upgrade(settings)
    if as_json:
        print_json(
            {
                "database": settings.where,
                "before": result.before,
                "after": result.after,
                "head": result.head,
                "changed": result.changed,
            }
        )
        return
    if result.changed:
        console.print(
            f"schema at {settings.where} upgraded from {result.before or 'nothing'} "
            f"to {result.after}"
        )
    else:
        console.print(f"schema at {settings.where} already at {result.after}: nothing to do")


@db_group.command("current")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def db_current(as_json: bool) -> None:
    """The database's schema revision and the newest one this version ships."""
    from tasks.csv_batches.store.schema import current_revision, head_revision
    from worker.runtime.database import require_settings

    settings = require_settings()
    current, head = current_revision(settings), head_revision()
    if as_json:
        print_json({"database": settings.where, "current": current, "head": head})
        return
    state = "up to date" if current == head else "run `notify-worker db upgrade`"
    console.print(f"schema at {settings.where}: {current or 'none'} (newest {head}): {state}")
    if current != head:
        raise SystemExit(1)


COMMANDS = [db_group]
