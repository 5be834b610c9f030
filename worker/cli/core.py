"""Running the system: worker, beat, enqueue, status and the dead-letter store."""

from __future__ import annotations

import json
from typing import Any

import click
import redis
from rich.table import Table

from storage.errors import NotifyError
from worker.cli.health import health_command
from worker.cli.output import console, print_json
from worker.runtime import deadletter, queues, redis_urls
from worker.runtime.settings import get_worker_settings, sanitize_url


@click.command("worker", context_settings={"ignore_unknown_options": True})
@click.option("-Q", "--queues", "queue_names", help="Comma-separated queues (default: all).")
@click.option("-c", "--concurrency", type=int, help="Worker processes (default: CPU count).")
@click.option("-P", "--pool", default="prefork", show_default=True)
@click.option("-l", "--loglevel", default="INFO", show_default=True)
@click.option("-n", "--hostname", help="Node name, e.g. bulk@%h.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker_command(
    queue_names: str | None,
    concurrency: int | None,
    pool: str,
    loglevel: str,
    hostname: str | None,
    celery_args: tuple[str, ...],
) -> None:
    """Run a Celery worker consuming every queue (or those given with -Q)."""
    from storage.settings import get_settings
    from worker.runtime.app import app

    get_settings()  # a configuration error stops us here, naming the variable

    settings = get_worker_settings()
    redis_urls.check(settings)  # so does a Redis we cannot use (TLS, password, sentinels)
    names = queue_names or ",".join(queues.all_queues(settings.row_sink_queue))
    argv = ["worker", f"--loglevel={loglevel}", f"--pool={pool}", f"--queues={names}"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main([*argv, *celery_args])


@click.command("beat", context_settings={"ignore_unknown_options": True})
@click.option("-l", "--loglevel", default="INFO", show_default=True)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def beat_command(loglevel: str, celery_args: tuple[str, ...]) -> None:
    """Run celery beat with RedBeat: only the holder of the Redis lock sends anything."""
    from worker.cli import beat_gauges
    from worker.runtime.app import app

    beat_gauges.register()  # jobs by status on beat's exporter (NOTIFY_METRICS_PORT)

    redis_urls.check(get_worker_settings())

    app.start(
        [
            "beat",
            f"--loglevel={loglevel}",
            "--scheduler=worker.runtime.beat_scheduler:NotifyRedBeatScheduler",
            *celery_args,
        ]
    )


@click.command("enqueue")
@click.argument("task_name")
@click.argument("kwargs_json", default="{}")
@click.option("--wait", is_flag=True, help="Block until the task ends and print its result.")
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds to wait.")
@click.option("--request-id", help="Sent as the notify_request_id header: on the task's log lines.")
def enqueue_command(
    task_name: str, kwargs_json: str, wait: bool, timeout: float, request_id: str | None
) -> None:
    """Send TASK_NAME with keyword arguments given as one JSON object.

    Exit codes: 0 sent (or, with --wait, the task succeeded), 1 the task failed, 5 no result
    within --timeout (no worker took it, or it is still running), 6 Redis did not answer.
    """
    from worker.cli.output import send_or_explain, wait_for_result
    from worker.client import send_by_name

    try:
        kwargs = json.loads(kwargs_json)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="KWARGS_JSON") from None
    if not isinstance(kwargs, dict):
        raise click.BadParameter(
            "must be a JSON object of keyword arguments", param_hint="KWARGS_JSON"
        )
    try:
        result = send_or_explain(
            lambda: send_by_name(task_name, kwargs, request_id=request_id), task_name
        )
    except ValueError as error:
        hint = "--request-id" if getattr(error, "argument", None) == "request_id" else "TASK_NAME"
        raise click.BadParameter(str(error), param_hint=hint) from None
    if not wait:
        print_json({"task_id": result.id, "task": task_name})
        return
    queue = queues.TASK_QUEUES.get(task_name)
    if task_name == queues.NOTIFICATIONS_SAVE_BATCH:
        queue = get_worker_settings().row_sink_queue
    value = wait_for_result(result, timeout, f"waiting for {task_name}", queue=queue)
    print_json(value)
    if value.get("status") == "failed":
        raise SystemExit(1)


def broker_queue_lengths(client: redis.Redis, names: list[str]) -> dict[str, int]:
    """Messages waiting per queue (kombu's Redis transport keeps each queue as a list)."""
    return {name: int(client.llen(name)) for name in names}


def gather_status() -> dict[str, Any]:
    settings = get_worker_settings()
    broker = redis_urls.make_client(
        settings.redis_url, settings, socket_connect_timeout=5, socket_timeout=5
    )
    try:
        status: dict[str, Any] = {
            "queues": broker_queue_lengths(broker, queues.all_queues(settings.row_sink_queue)),
            "unacked": int(broker.hlen("unacked")),
        }
    except redis.RedisError as error:
        target = redis_urls.parse(settings.redis_url, "REDIS_URL")
        raise NotifyError(
            f"Cannot read the broker at {sanitize_url(settings.redis_url)}: "
            f"{redis_urls.describe_error(target, error)}",
            code="redis_unreachable",
        ) from None
    try:
        status["deadletters"] = deadletter.count()
    except redis.RedisError as error:
        target = redis_urls.parse(settings.state_redis_url, "NOTIFY_STATE_REDIS_URL")
        raise NotifyError(
            f"Cannot read the state store at {sanitize_url(settings.state_redis_url)}: "
            f"{redis_urls.describe_error(target, error)}",
            code="redis_unreachable",
        ) from None
    from tasks.csv_batches.state import status_summary

    status["jobs"] = status_summary()
    return status


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_command(as_json: bool) -> None:
    """Queue lengths, running/scheduled/stuck jobs and the dead-letter count."""
    status = gather_status()
    if as_json:
        print_json(status)
        return
    table = Table(title="queues", show_edge=False)
    table.add_column("queue")
    table.add_column("waiting", justify="right")
    for name, length in status["queues"].items():
        table.add_row(name, str(length))
    console.print(table)
    console.print(f"unacked (delivered, not yet acknowledged): {status['unacked']}")
    for name, value in status.get("jobs", {}).items():
        console.print(f"jobs {name}: {value}")
    console.print(f"dead letters: {status['deadletters']}")


@click.group("deadletter")
def deadletter_group() -> None:
    """Poison messages and tasks that ran out of retries."""


@deadletter_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def deadletter_list(as_json: bool) -> None:
    found = deadletter.entries()
    if as_json:
        # Argument names only: a row-sink batch would carry recipients.
        print_json([{**e.__dict__, "kwargs": sorted(e.kwargs)} for e in found])
        return
    if not found:
        console.print("no dead letters")
    for entry in found:
        # Plain text: "[names]" is not rich markup, and ids must not be wrapped.
        console.print(entry.summary(), markup=False, highlight=False, soft_wrap=True)


@deadletter_group.command("replay")
@click.argument("task_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
def deadletter_replay(task_ids: tuple[str, ...], replay_all: bool) -> None:
    """Send dead letters again with their original arguments (new task ids)."""
    if not task_ids and not replay_all:
        raise click.UsageError("give TASK_IDS or --all")
    from worker.runtime.app import app

    replayed = deadletter.replay(None if replay_all else list(task_ids), app=app)
    for old, new in replayed:
        console.print(f"replayed {old} as {new}", highlight=False, soft_wrap=True)
    if task_ids and len(replayed) < len(task_ids):
        missing = set(task_ids) - {old for old, _ in replayed}
        raise click.ClickException(f"not in the dead-letter store: {', '.join(sorted(missing))}")


COMMANDS = [
    worker_command,
    beat_command,
    enqueue_command,
    status_command,
    deadletter_group,
    health_command,
]
