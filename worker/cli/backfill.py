"""``notify-worker backfill csv|letters|reports|cleanup``: re-run a workflow over many items.

Every subcommand shares the framework's options (``worker.backfill``): ``--dry-run`` lists and
counts without running anything, ``--concurrency N`` runs N items at once in this process,
``--enqueue`` hands each item to the workers by task name instead (``--wait`` blocks on each
result), a progress bar, and a checkpoint under ``--state-dir`` so that running the same command
again (after Ctrl-C, a crash or failures) skips what is done. ``--restart`` ignores it.

Exit status: 0 all done; 1 some item failed (listed); 2 bad input (nothing was run);
130 interrupted (run the same command again to resume).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from storage.errors import InvalidInput
from worker.backfill.framework import (
    DEFAULT_STATE_DIR,
    BackfillItem,
    BackfillSummary,
    print_summary,
    run_backfill,
)
from worker.cli.output import console, err_console, print_json
from worker.runtime import queues

EXIT_BAD_INPUT = 2


def framework_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every backfill shares, passed on as ``run`` (a dict)."""
    options = [
        click.option("--dry-run", is_flag=True, help="List and count; run nothing."),
        click.option(
            "--concurrency",
            type=click.IntRange(1, 64),
            default=4,
            show_default=True,
            help="Items at once (threads in process, or messages in flight with --wait).",
        ),
        click.option(
            "--enqueue", is_flag=True, help="Send each item to the workers instead of running it."
        ),
        click.option("--wait", is_flag=True, help="With --enqueue: wait for each task's result."),
        click.option(
            "--wait-timeout", type=float, default=3600, show_default=True, help="Seconds per item."
        ),
        click.option(
            "--state-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=DEFAULT_STATE_DIR,
            show_default=True,
            help="Where resume checkpoints live.",
        ),
        click.option("--restart", is_flag=True, help="Ignore the checkpoint; start over."),
        click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON."),
        click.option("-v", "--verbose", is_flag=True, help="With --dry-run: list every item."),
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        run = {
            name: kwargs.pop(name)
            for name in (
                "dry_run",
                "concurrency",
                "enqueue",
                "wait",
                "wait_timeout",
                "state_dir",
                "restart",
                "as_json",
                "verbose",
            )
        }
        if run["wait"] and not run["enqueue"]:
            raise click.UsageError("--wait needs --enqueue")
        return command(run=run, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def _execute(
    items: Iterable[BackfillItem | tuple[str, Mapping[str, Any]]],
    *,
    name: str,
    args: Mapping[str, Any],
    handler: Callable[[dict[str, Any]], Mapping[str, Any]],
    task_name: str,
    run: Mapping[str, Any],
    total: int | None = None,
    after: Callable[[BackfillSummary], None] | None = None,
) -> None:
    """Run the framework, print the summary, exit with its code."""
    summary = run_backfill(
        items,
        name=name,
        args=args,
        handler=handler,
        task_name=task_name,
        dry_run=run["dry_run"],
        concurrency=run["concurrency"],
        enqueue=run["enqueue"],
        wait=run["wait"],
        wait_timeout=run["wait_timeout"],
        state_dir=run["state_dir"],
        total=total,
        restart=run["restart"],
        console=err_console,
        show_planned=run["verbose"],
    )
    if after is not None:
        after(summary)
    if run["as_json"]:
        print_json(summary.as_dict())
    else:
        print_summary(summary, console)
    sys.exit(summary.exit_code)


def _refuse_bad_lines(path: Path, good: int, bad: list[InvalidInput]) -> None:
    """A file with bad lines runs nothing: list them and exit 2."""
    if not bad:
        return
    for error in bad:
        err_console.print(f"{path}: {error.message}", markup=False, highlight=False, soft_wrap=True)
    more = " (showing the first ones)" if len(bad) >= 20 else ""
    err_console.print(
        f"{len(bad)} bad line(s){more}, {good} good: fix the file; nothing was run.",
        markup=False,
        soft_wrap=True,
    )
    sys.exit(EXIT_BAD_INPUT)


def _file_args(path: Path) -> dict[str, Any]:
    return {"file": str(path.resolve())}


@click.group("backfill")
def backfill_group() -> None:
    """Re-run a workflow over many items, resumably (see each subcommand)."""


# --- letters -----------------------------------------------------------------------------------


@backfill_group.command("letters")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@framework_options
def backfill_letters(file: Path, run: dict[str, Any]) -> None:
    """Move the transient letters listed in FILE (JSON lines of move_transient arguments).

    The transient bucket does not hold a letter's reference, postage or created_at, so they
    come from FILE, one object a line: {"service_id", "upload_id", "reference", "postage",
    "created_at", "backup"?}. The whole file is checked first; a bad line stops everything.
    """
    from tasks.letters.backfill import check_letter_file, iter_letter_jobs, run_letter_job

    good, bad = check_letter_file(file)
    _refuse_bad_lines(file, good, list(bad))
    _execute(
        iter_letter_jobs(file),
        name="letters",
        args=_file_args(file),
        handler=run_letter_job,
        task_name=queues.LETTERS_MOVE_TRANSIENT,
        run=run,
        total=good,
    )


# --- reports -----------------------------------------------------------------------------------


def _params(pairs: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected k=v, got {pair!r}", param_hint="--param")
        params[name] = value
    return params


@backfill_group.command("reports")
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON lines: {"service_id", "kind", "params"?, "report_request_id"?}.',
)
@click.option("--kind", "kinds", multiple=True, help="A report kind (repeatable).")
@click.option("--service-id", "service_ids", multiple=True, help="A service (repeatable).")
@click.option("--param", "param_pairs", multiple=True, help="k=v for every --kind (repeatable).")
@click.option(
    "--label",
    default="",
    help="Part of the derived report ids: a new label makes new reports for the same requests.",
)
@framework_options
def backfill_reports(
    file: Path | None,
    kinds: tuple[str, ...],
    service_ids: tuple[str, ...],
    param_pairs: tuple[str, ...],
    label: str,
    run: dict[str, Any],
) -> None:
    """Generate reports: from a JSON-lines FILE of requests, or every --kind x --service-id.

    A request without a report_request_id gets one derived from its content (and --label), so
    a rerun finds the reports it made instead of making new ones.
    """
    from tasks.reports import backfill as report_sources
    from tasks.reports.generate import generate_report
    from worker.runtime import backfill_items as sources

    if file is not None:
        if kinds or service_ids or param_pairs:
            raise click.UsageError("give --file, or --kind and --service-id, not both")
        good, bad = sources.check_jsonl(
            file, lambda value, number: report_sources.parse_report_line(value, number, label)
        )
        _refuse_bad_lines(file, good, bad)
        items: Iterable[BackfillItem] = report_sources.report_file_items(file, label)
        args: dict[str, Any] = {**_file_args(file), "label": label}
        total = good
    else:
        if not kinds or not service_ids:
            raise click.UsageError("give --file, or at least one --kind and one --service-id")
        params = _params(param_pairs)
        try:
            grid = report_sources.report_grid_items(kinds, service_ids, params, label)
        except InvalidInput as error:
            raise click.BadParameter(error.message) from None
        items, total = grid, len(grid)
        args = {
            "kinds": sorted(kinds),
            "service_ids": sorted(service_ids),
            "params": params,
            "label": label,
        }
    _execute(
        items,
        name="reports",
        args=args,
        handler=lambda kwargs: generate_report(**kwargs),
        task_name=queues.REPORTS_GENERATE,
        run=run,
        total=total,
    )


# --- cleanup -----------------------------------------------------------------------------------


@backfill_group.command("cleanup")
@click.option(
    "--bucket", "buckets", multiple=True, help="A purpose (repeatable; default: every swept one)."
)
@click.option("--execute", is_flag=True, help="Delete for real (default: each sweep is a dry run).")
@click.option("--as-of", help="ISO 8601 moment ages are measured against (default: now).")
@click.option("--max-deletions", type=click.IntRange(min=1), help="Cap per bucket.")
@framework_options
def backfill_cleanup(
    buckets: tuple[str, ...],
    execute: bool,
    as_of: str | None,
    max_deletions: int | None,
    run: dict[str, Any],
) -> None:
    """Sweep several buckets, one item per purpose (protected purposes are refused by the sweep).

    Without --execute every sweep only reports what it would delete; --dry-run goes further and
    runs no sweep at all. The checkpoint is per day when --as-of is not given, so tomorrow's
    run sweeps again.
    """
    from storage.buckets import spec
    from storage.keys import isoformat, parse_timestamp
    from tasks.cleanup.sweep import sweep
    from worker.runtime.beat import cleanup_purposes

    purposes = list(dict.fromkeys(buckets)) or cleanup_purposes()
    try:
        for purpose in purposes:
            spec(purpose)
        moment = isoformat(parse_timestamp(as_of, "--as-of")) if as_of else None
    except InvalidInput as error:
        raise click.BadParameter(error.message) from None
    kwargs: dict[str, Any] = {"dry_run": not execute}
    if moment:
        kwargs["as_of"] = moment
    if max_deletions is not None:
        kwargs["max_deletions"] = max_deletions
    items = [BackfillItem(p, {"bucket": p, **kwargs}) for p in purposes]
    args = {
        "buckets": purposes,
        **kwargs,
        "day": None if moment else datetime.now(UTC).date().isoformat(),
    }

    def handler(task_kwargs: dict[str, Any]) -> Mapping[str, Any]:
        purpose = task_kwargs.pop("bucket")
        return sweep(purpose, **task_kwargs).as_dict()

    _execute(
        items,
        name="cleanup",
        args=args,
        handler=handler,
        task_name=queues.CLEANUP_SWEEP,
        run=run,
        total=len(items),
    )


# --- csv ---------------------------------------------------------------------------------------


@backfill_group.command("csv")
@click.option("--service-id", "service_ids", multiple=True, help="A service (repeatable).")
@click.option("--prefix", help="A key prefix to list instead of whole services.")
@click.option("--from", "date_from", help="Uploaded at or after (ISO 8601; naive = UTC).")
@click.option("--to", "date_to", help="Uploaded before (a bare date: to the end of that day).")
@click.option(
    "--source",
    type=click.Choice(["csv-upload", "contact-list"]),
    default="csv-upload",
    show_default=True,
)
@click.option(
    "--jobs",
    "jobs_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON lines of process_batch arguments (the web app's jobs), instead of listing.",
)
@click.option(
    "--templates",
    "templates_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON lines {"id", "type", "placeholders"}: template info by template_id.',
)
@click.option("--template-type", type=click.Choice(["sms", "email", "letter"]))
@click.option("--placeholders", default="", help="Comma-separated, with --template-type.")
@click.option("--allow-international-sms", is_flag=True)
@click.option("--allow-international-letters", is_flag=True)
@click.option("--allow-sms-to-uk-landline", is_flag=True)
@framework_options
def backfill_csv(
    service_ids: tuple[str, ...],
    prefix: str | None,
    date_from: str | None,
    date_to: str | None,
    source: str,
    jobs_file: Path | None,
    templates_file: Path | None,
    template_type: str | None,
    placeholders: str,
    allow_international_sms: bool,
    allow_international_letters: bool,
    allow_sms_to_uk_landline: bool,
    run: dict[str, Any],
) -> None:
    """(Re)process CSV jobs that never finished: listed from the bucket, or from --jobs FILE.

    Listing mode selects uploads by --service-id (or --prefix) and --from/--to on their upload
    time, skips those whose outcome is recorded (processing_status) and runs the rest. Every
    upload in the selection is treated as a job: the bucket cannot tell an abandoned upload
    from a job, so keep the selection narrow and look at --dry-run -v first, or give the web
    app's own list with --jobs.
    """
    from storage.keys import require_uuid
    from tasks.csv_batches import backfill as csv_sources
    from tasks.csv_batches.processing import process_job
    from tasks.csv_batches.spec import JobSpec
    from worker.runtime import backfill_items as sources
    from worker.runtime.app import app

    def handler(kwargs: dict[str, Any]) -> Mapping[str, Any]:
        scheduled_for = kwargs.pop("scheduled_for", None)
        return process_job(JobSpec.from_kwargs(**kwargs), scheduled_for=scheduled_for, app=app)

    try:
        for service_id in service_ids:
            require_uuid(service_id, "--service-id")
    except InvalidInput as error:
        raise click.BadParameter(error.message) from None

    if jobs_file is not None:
        if prefix or date_from or date_to or templates_file or template_type:
            raise click.UsageError("--jobs takes only --service-id as a filter")
        good, bad = sources.check_jsonl(jobs_file, csv_sources.parse_csv_job_line)
        _refuse_bad_lines(jobs_file, good, bad)
        _execute(
            csv_sources.csv_job_items(jobs_file, service_ids),
            name="csv",
            args={**_file_args(jobs_file), "service_ids": sorted(service_ids)},
            handler=handler,
            task_name=queues.CSV_PROCESS_BATCH,
            run=run,
            total=None if service_ids else good,
        )
        return

    if prefix and service_ids:
        raise click.UsageError("give --service-id or --prefix, not both")
    if placeholders and not template_type:
        raise click.UsageError("--placeholders needs --template-type")
    try:
        selection = csv_sources.CsvSelection(
            source=source,
            service_ids=tuple(service_ids),
            prefix=prefix,
            date_from=csv_sources.parse_date_bound(date_from, "--from"),
            date_to=csv_sources.parse_date_bound(date_to, "--to", end=True),
            templates=csv_sources.load_templates(templates_file) if templates_file else {},
            default_template=csv_sources.Template(
                None, template_type, tuple(p.strip() for p in placeholders.split(",") if p.strip())
            )
            if template_type
            else None,
            options={
                "allow_international_sms": allow_international_sms,
                "allow_international_letters": allow_international_letters,
                "allow_sms_to_uk_landline": allow_sms_to_uk_landline,
            },
        )
    except InvalidInput as error:
        raise click.BadParameter(error.message) from None
    args = {
        "source": source,
        "service_ids": sorted(service_ids),
        "prefix": prefix,
        "from": date_from,
        "to": date_to,
        "templates": str(templates_file.resolve()) if templates_file else None,
        "template_type": template_type,
        "placeholders": placeholders,
        "options": dict(selection.options),
    }

    def show_selection(_: BackfillSummary) -> None:
        counts = ", ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in sorted(selection.counts.items())
        )
        err_console.print(f"listing: {counts or 'nothing found'}", highlight=False, soft_wrap=True)

    _execute(
        csv_sources.csv_items(selection),
        name="csv",
        args=args,
        handler=handler,
        task_name=queues.CSV_PROCESS_BATCH,
        run=run,
        after=show_selection,
    )


COMMANDS = [backfill_group]
