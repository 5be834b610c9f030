"""``notify-worker buckets create|check|policy``."""

from __future__ import annotations

import click

from storage import admin
from storage.settings import get_settings
from worker.cli.output import console, print_json


@click.group("buckets")
def buckets_group() -> None:
    """Create, check and describe the registry's buckets."""


@buckets_group.command("create")
def buckets_create() -> None:
    """Create every bucket with AES256 default encryption and lifecycle rules (idempotent)."""
    for name in admin.create_buckets():
        console.print(f"ok  {name}")


@buckets_group.command("check")
def buckets_check() -> None:
    """Check credentials, region, existence, encryption and lifecycle; exit 1 on any problem."""
    settings = get_settings()
    result = admin.check_buckets(settings)
    bad = {p.bucket for p in result.problems}
    for name in result.checked:
        if name not in bad:
            console.print(f"[green]ok[/]   {name}")
    for problem in result.problems:
        console.print(f"[red]FAIL[/] {problem}")
    if not result.ok:
        raise SystemExit(1)
    console.print(f"all {len(result.checked)} buckets ok in {settings.region}")


@buckets_group.command("policy")
def buckets_policy() -> None:
    """Print the least-privilege IAM policy for the configured buckets."""
    print_json(admin.iam_policy())


COMMANDS = [buckets_group]
