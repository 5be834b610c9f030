"""Small output helpers shared by the commands: JSON for machines, rich for people."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

T = TypeVar("T")

# Wide enough for summaries when piped (rich assumes 80 columns without a terminal).
_WIDTH = None if sys.stdout.isatty() else 120
console = Console(stderr=False, highlight=False, width=_WIDTH)
err_console = Console(stderr=True, highlight=False, width=_WIDTH)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


# --- waiting for a task's result ------------------------------------------------------------------

EXIT_NO_RESULT = 5  # --wait: no result in time (no worker took the task, or it is still running)
EXIT_UNREACHABLE = 6  # the broker or the result store did not answer


class NoResult(click.ClickException):
    """No result within ``--timeout``: a clear message and exit code 5, never a traceback."""

    exit_code = EXIT_NO_RESULT


class Unreachable(click.ClickException):
    """The broker or the result store cannot be reached: exit code 6."""

    exit_code = EXIT_UNREACHABLE


def _connection_errors() -> tuple[type[BaseException], ...]:
    import redis
    from kombu.exceptions import OperationalError

    return (OperationalError, redis.RedisError, ConnectionError, TimeoutError)


def send_or_explain(send: Callable[[], T], what: str) -> T:
    """Run ``send`` (a ``send_task`` call); a broker that does not answer ends the command with
    a clear message (the URL without its password) and ``EXIT_UNREACHABLE``."""
    from worker.runtime.settings import get_worker_settings, sanitize_url

    try:
        return send()
    except (*_connection_errors(), RuntimeError) as error:
        # Celery's Redis result store raises a bare RuntimeError when it cannot subscribe.
        if isinstance(error, RuntimeError) and "result store" not in str(error):
            raise
        url = sanitize_url(get_worker_settings().redis_url)
        raise Unreachable(
            f"could not send {what}: Redis at {url} did not answer "
            f"({type(error).__name__}). Check REDIS_URL, NOTIFY_RESULT_BACKEND_URL and that "
            "Redis is running."
        ) from None


def wait_for_result(
    result: Any,
    timeout: float,
    description: str,
    *,
    queue: str | None = None,
    on_tick: Callable[[Any, Progress, TaskID], None] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Wait for a task's result with a spinner on stderr; return it as a result dict.

    No result within ``timeout`` raises ``NoResult``, saying whether any worker took the task;
    a result store that stops answering raises ``Unreachable``. A task that raised (rather than
    returning a result) comes back as a ``failed`` result. ``on_tick`` may update the bar.
    """
    bar = progress or Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    deadline = time.monotonic() + timeout
    try:
        with bar:
            task = bar.add_task(description, total=None)
            while not result.ready():
                if time.monotonic() >= deadline:
                    raise NoResult(_no_result_message(result, timeout, queue))
                if on_tick is not None:
                    on_tick(result, bar, task)
                time.sleep(0.25)
        value = result.get(propagate=False)
    except _connection_errors() as error:
        raise Unreachable(
            f"the result store stopped answering while waiting for task {result.id} "
            f"({type(error).__name__}); the task may still run. Check REDIS_URL and "
            "NOTIFY_RESULT_BACKEND_URL."
        ) from None
    if isinstance(value, dict):
        return value
    return {
        "status": "failed",
        "error_code": "task_error",
        "error_message": f"{type(value).__name__}: {value}",
    }


def _no_result_message(result: Any, timeout: float, queue: str | None) -> str:
    where = f" on queue {queue}" if queue else ""
    try:
        state = result.state
    except _connection_errors():
        state = "PENDING"
    if state == "PENDING":
        return (
            f"no result after {timeout:g}s: no worker has taken task {result.id}{where} yet. "
            "Is a worker consuming that queue (with the same NOTIFY_QUEUE_PREFIX)? The message "
            "stays queued and runs when one does; `notify-worker status` shows the queues."
        )
    return (
        f"no result after {timeout:g}s: task {result.id} is {state.lower()} on a worker and "
        "keeps running; its result is kept for 7 days."
    )
