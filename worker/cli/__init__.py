"""The ``notify-worker`` command line (click, as Celery itself uses).

Each area has its own module; this one builds the group and turns our typed errors into a
clear message and a non-zero exit instead of a traceback.
"""

from __future__ import annotations

import sys

import click
import redis

from storage.errors import ConfigurationError, NotifyError
from worker.cli import backfill, buckets, cleanup, core, db, demo, jobs, reports


class NotifyGroup(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except NotifyError as error:
            click.secho(f"error: {error.message}", fg="red", err=True)
            sys.exit(2 if isinstance(error, ConfigurationError) else 1)
        except redis.RedisError as error:
            from worker.runtime.redis_urls import redact
            from worker.runtime.settings import get_worker_settings

            text = redact(f"{type(error).__name__}: {error}", get_worker_settings())
            click.secho(f"error: Redis: {text}", fg="red", err=True)
            sys.exit(1)


@click.group(cls=NotifyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="notify-worker")
def main() -> None:
    """notify-worker: Celery workers for the S3 workflows of a Notify-style service."""
    from worker.runtime import logs
    from worker.runtime.settings import get_worker_settings

    settings = get_worker_settings()
    logs.configure(settings.log_level, settings.log_format)


for module in (core, buckets, jobs, cleanup, reports, backfill, db, demo):
    for command in module.COMMANDS:
        main.add_command(command)
