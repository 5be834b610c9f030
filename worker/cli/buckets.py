"""``notify-worker buckets create|check|policy``."""

from __future__ import annotations

import click

from storage import admin
from storage.settings import get_settings
from worker.cli.output import console, err_console, print_json


@click.group("buckets")
def buckets_group() -> None:
    """Create, check and describe the registry's buckets."""


@buckets_group.command("create")
@click.option("--dry-run", is_flag=True, help="Show the plan for each bucket; change nothing.")
def buckets_create(dry_run: bool) -> None:
    """Create every bucket and merge in encryption, versioning, lifecycle rules, Block Public
    Access and the bucket policy. Never weakens or erases what is there (idempotent)."""
    plans = admin.create_buckets(dry_run=dry_run)
    verb = "would change" if dry_run else "changed"
    for plan in plans:
        state = f"[yellow]{verb}[/]" if plan.changed else "[green]ok[/]"
        console.print(f"{state}  {plan.name}  ({plan.purpose})")
        for change in plan.changed:
            console.print(f"    {verb}: {change}")
        for left in plan.left:
            console.print(f"    left:    {left}")
    touched = sum(1 for p in plans if p.changed)
    if dry_run:
        console.print(f"dry run: {touched} of {len(plans)} buckets would change; nothing written")
    else:
        console.print(f"{touched} of {len(plans)} buckets changed")


@buckets_group.command("check")
def buckets_check() -> None:
    """Check credentials, region, existence, encryption, lifecycle, versioning, public access
    and bucket policy; FAIL lines go to stderr; exit 1 on any problem."""
    settings = get_settings()
    result = admin.check_buckets(settings)
    bad = {p.bucket for p in result.problems}
    for name in result.checked:
        if name not in bad:
            console.print(f"[green]ok[/]   {name}")
    for note in result.notes:
        console.print(f"note {note}")
    for problem in result.problems:
        err_console.print(f"[red]FAIL[/] {problem}")
    if not result.ok:
        err_console.print(f"{len(result.problems)} problem(s); see {admin.TROUBLESHOOTING}")
        raise SystemExit(1)
    console.print(f"all {len(result.checked)} buckets ok in {settings.region}")


@buckets_group.command("policy")
def buckets_policy() -> None:
    """Print the least-privilege IAM policy for the configured buckets."""
    print_json(admin.iam_policy())


COMMANDS = [buckets_group]
