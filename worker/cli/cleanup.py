"""``notify-worker cleanup --bucket PURPOSE``: a dry run unless ``--execute``.

Exit codes: 0 done (or a dry run of a purpose that is never swept), 1 the run failed or some
keys could not be deleted, 3 ``--max-deletions`` reached, 4 ``--execute`` on a purpose that
is never swept (protected, or reference-only without a reference check); with ``--enqueue
--wait``, 5 no result within ``--timeout`` and 6 Redis did not answer.
"""

from __future__ import annotations

from typing import Any

import click
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from storage.buckets import PURPOSES
from worker.cli.output import console, err_console, print_json

EXIT_FAILED = 1
EXIT_MAX_DELETIONS = 3
EXIT_REFUSED = 4


@click.command("cleanup")
@click.option(
    "--bucket", "purpose", required=True, type=click.Choice(PURPOSES), help="Purpose to sweep."
)
@click.option("--execute", is_flag=True, help="Really delete (default: dry run).")
@click.option(
    "--max-deletions",
    type=click.IntRange(min=1),
    help="Stop after this many deletions (default NOTIFY_CLEANUP_MAX_DELETIONS, 10,000).",
)
@click.option("--as-of", help="ISO 8601 moment ages are measured against (default now; naive=UTC).")
@click.option("--enqueue", is_flag=True, help="Send notify.cleanup.sweep to the workers instead.")
@click.option("--wait", is_flag=True, help="With --enqueue: wait for the result and print it.")
@click.option("--timeout", type=float, default=3600, show_default=True, help="Seconds to --wait.")
@click.option("-v", "--verbose", is_flag=True, help="List every key deleted (or to be deleted).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def cleanup_command(
    purpose: str,
    execute: bool,
    max_deletions: int | None,
    as_of: str | None,
    enqueue: bool,
    wait: bool,
    timeout: float,
    verbose: bool,
    as_json: bool,
) -> None:
    """Find and delete expired or orphaned objects in one bucket (docs/cleanup.md)."""
    from storage.keys import isoformat, parse_timestamp

    if as_of is not None:
        as_of = isoformat(parse_timestamp(as_of, "--as-of"))
    if enqueue:
        result = _enqueue(purpose, execute, max_deletions, as_of, wait, timeout)
        if result is None:
            return
    else:
        result = _run_here(purpose, execute, max_deletions, as_of, verbose, as_json)
    if as_json:
        print_json(result)
    else:
        _print_summary(result)
    raise SystemExit(exit_code(result))


def exit_code(result: dict[str, Any]) -> int:
    status = result.get("status")
    if status == "skipped":
        return 0 if result.get("dry_run", True) else EXIT_REFUSED
    if result.get("error_code") == "max_deletions_reached":
        return EXIT_MAX_DELETIONS
    return EXIT_FAILED if status == "failed" else 0


def _enqueue(
    purpose: str,
    execute: bool,
    max_deletions: int | None,
    as_of: str | None,
    wait: bool,
    timeout: float,
) -> dict[str, Any] | None:
    from worker.cli.output import send_or_explain, wait_for_result
    from worker.client import NotifyClient
    from worker.runtime import queues

    sent = send_or_explain(
        lambda: NotifyClient().sweep_bucket(
            purpose, dry_run=not execute, max_deletions=max_deletions, as_of=as_of
        ),
        queues.CLEANUP_SWEEP,
    )
    if not wait:
        print_json({"task_id": sent.id, "task": queues.CLEANUP_SWEEP, "bucket": purpose})
        return None
    value = wait_for_result(sent, timeout, f"cleanup of {purpose} (worker)", queue=queues.CLEANUP)
    value.setdefault("dry_run", not execute)
    return value


def _run_here(
    purpose: str,
    execute: bool,
    max_deletions: int | None,
    as_of: str | None,
    verbose: bool,
    as_json: bool,
) -> dict[str, Any]:
    from tasks.cleanup.sweep import sweep

    # Keys and the progress bar go to stderr with --json, so stdout stays one JSON document.
    verb = "deleted" if execute else "would delete"
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"cleanup {purpose}", total=None)

        def on_progress(update: Any) -> None:
            bar.update(
                task,
                description=(
                    f"cleanup {purpose}: listed {update.listed:,}, {verb} "
                    f"{(update.deleted if execute else update.matched):,}, kept {update.kept:,}"
                ),
            )
            if verbose and update.batch:
                done = set(update.deleted_keys)
                for candidate in update.batch:
                    status = verb if not execute or candidate.key in done else "NOT deleted"
                    # Plain echo: keys are long and must never be wrapped or read as markup.
                    click.echo(f"{status}  {candidate.key}  ({candidate.reason})", err=as_json)

        result = sweep(
            purpose,
            dry_run=not execute,
            max_deletions=max_deletions,
            as_of=as_of,
            progress=on_progress,
        )
    return result.as_dict()


def _print_summary(result: dict[str, Any]) -> None:
    dry = result.get("dry_run", True)
    skipped = result.get("status") == "skipped"
    mode = "DRY RUN (nothing deleted; add --execute to delete)" if dry else "EXECUTED"
    if skipped:
        mode = "NOT SWEPT"
    console.print(f"cleanup {result.get('purpose', '?')} ({result.get('bucket', '?')}): {mode}")
    if result.get("rule"):
        console.print(f"rule: {result['rule']}", markup=False)
    if skipped:
        console.print(f"[yellow]skipped:[/] {result.get('reason')}")
        if not dry:
            console.print("[red]refused:[/] --execute on a purpose that is never swept.")
    table = Table(show_edge=False)
    table.add_column("outcome")
    table.add_column("reason")
    table.add_column("objects", justify="right")
    label = "would delete" if dry else "deleted"
    for reason, count in (result.get("matched_by_reason") or {}).items():
        table.add_row(label, reason, f"{count:,}")
    for reason, count in (result.get("kept_by_reason") or {}).items():
        table.add_row("kept", reason, f"{count:,}")
    if table.row_count:
        console.print(table)
    summary = (
        f"listed {result.get('listed', 0):,}; {label} "
        f"{result.get('deleted' if not dry else 'matched', 0):,}; kept {result.get('kept', 0):,}"
    )
    if result.get("multipart_stale"):
        summary += (
            f"; stale multipart uploads {result['multipart_stale']}"
            f" (aborted {result.get('multipart_aborted', 0)})"
        )
    if not skipped or result.get("multipart_stale"):
        console.print(summary)
    for log_key in result.get("audit_logs") or []:
        click.echo(f"audit log: {log_key}")
    for error in result.get("errors") or []:
        click.echo(f"not deleted: {error['key']} ({error['code']}: {error['message']})")
    if result.get("error_count", 0) > len(result.get("errors") or []):
        console.print(f"... {result['error_count']} per-key errors in all")
    if result.get("status") == "failed":
        code = result.get("error_code")
        message = result.get("error_message")
        err_console.print(f"[red]error ({code}):[/] {message}")


COMMANDS = [cleanup_command]
