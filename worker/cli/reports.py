"""`notify-worker reports generate`: write a report in process (with a progress bar) or enqueue it.

    notify-worker reports generate uploads --service-id SID --param from=2026-01-01
    notify-worker reports generate job-outcome --service-id SID --param upload_id=U --enqueue --wait

The key goes to stdout (``--json`` prints the whole result instead); progress and the summary go
to stderr, so the command is easy to script. A report request id is made when none is given.
"""

from __future__ import annotations

import uuid
from typing import Any

import click
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from storage.errors import InvalidInput
from storage.keys import report_key, require_uuid
from worker.cli.output import err_console, print_json


def parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    """``k=v`` pairs into a dict; each name once."""
    params: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not k=v", param_hint="--param")
        if name in params:
            raise click.BadParameter(f"{name!r} given twice", param_hint="--param")
        params[name] = value
    return params


def _progress_bar() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} rows"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


def _show(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(result)
    else:
        if result.get("status") in ("ok", "skipped"):
            note = " (already there: not replaced)" if result["status"] == "skipped" else ""
            rows, size = result.get("rows"), result.get("size_bytes") or 0
            shown = "?" if rows is None else f"{rows:,}"
            err_console.print(
                f"{result['status']}: {shown} rows, {size:,} bytes in "
                f"s3://{result.get('bucket')}/{result['key']}{note}",
                soft_wrap=True,
            )
            click.echo(result["key"])
        else:
            err_console.print(
                f"[red]failed: {result.get('error_code')}: {result.get('error_message')}[/red]",
                soft_wrap=True,
            )
    if result.get("status") == "failed":
        raise SystemExit(1)


def _run_in_process(
    report_request_id: str, service_id: str, kind: str, params: dict[str, str]
) -> dict[str, Any]:
    from tasks.reports.generate import generate_report

    with _progress_bar() as bar:
        task = bar.add_task(f"{kind} report", total=None)
        return generate_report(
            report_request_id,
            service_id,
            kind,
            params,
            progress=lambda rows: bar.update(task, completed=rows),
        )


def _enqueue(
    report_request_id: str,
    service_id: str,
    kind: str,
    params: dict[str, str],
    *,
    wait: bool,
    timeout: float,
) -> dict[str, Any] | None:
    from tasks.reports.kinds import get_kind
    from worker.client import NotifyClient

    # Refuse here what the worker would refuse, so the mistake shows at once.
    get_kind(kind).checked_params(params)
    from worker.cli.output import send_or_explain, wait_for_result
    from worker.runtime import queues

    result = send_or_explain(
        lambda: NotifyClient().generate_report(report_request_id, service_id, kind, params),
        queues.REPORTS_GENERATE,
    )
    err_console.print(f"enqueued task {result.id}")
    if not wait:
        click.echo(report_key(kind, report_request_id))
        return None

    def show_rows(result: Any, bar: Progress, task: TaskID) -> None:
        info = result.info
        if result.state == "PROGRESS" and isinstance(info, dict):
            bar.update(task, completed=int(info.get("rows") or 0))

    return wait_for_result(
        result,
        timeout,
        f"{kind} report (worker)",
        queue=queues.REPORTS,
        on_tick=show_rows,
        progress=_progress_bar(),
    )


@click.group("reports")
def reports_group() -> None:
    """Report exports into the report-downloads bucket."""


@reports_group.command("generate")
@click.argument("kind")
@click.option("--service-id", required=True, help="The service the report is for (UUID).")
@click.option("--param", "param_pairs", multiple=True, metavar="K=V", help="A report param.")
@click.option("--report-request-id", help="UUID of the report request (default: a new one).")
@click.option("--enqueue", is_flag=True, help="Hand the report to the workers.")
@click.option("--wait", is_flag=True, help="With --enqueue: wait for the result.")
@click.option("--timeout", type=float, default=3600, show_default=True, help="Seconds to wait.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
def generate_command(
    kind: str,
    service_id: str,
    param_pairs: tuple[str, ...],
    report_request_id: str | None,
    enqueue: bool,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Write a KIND report for a service and print its key."""
    if wait and not enqueue:
        raise click.UsageError("--wait goes with --enqueue (in process always waits)")
    params = parse_params(param_pairs)
    try:
        require_uuid(service_id, "--service-id")
        report_request_id = require_uuid(
            report_request_id or str(uuid.uuid4()), "--report-request-id"
        )
    except InvalidInput as error:
        raise click.BadParameter(error.message) from None
    if not enqueue:
        _show(_run_in_process(report_request_id, service_id, kind, params), as_json)
        return
    result = _enqueue(report_request_id, service_id, kind, params, wait=wait, timeout=timeout)
    if result is not None:
        _show(result, as_json)


COMMANDS = [reports_group]
