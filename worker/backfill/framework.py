"""The backfill framework: many idempotent items, in process or on the workers, resumable.

``run_backfill`` takes a stream of items (an id and the task's keyword arguments) and

* runs each one in process through a thread pool (``concurrency``), or hands it to the workers
  by task name (``enqueue``; ``wait`` blocks on each result);
* shows a rich progress bar;
* appends each finished item's id to a checkpoint file under ``state_dir``, named after the
  backfill and a hash of its arguments, so running the same command again skips what is done;
* on Ctrl-C stops submitting, lets running items finish, flushes the checkpoint and reports
  ``interrupted`` (the CLI exits 130 with "run the same command again to resume");
* ends with a summary: done, skipped as already done, failed with reasons, duration.

Items are never read into memory all at once: at most ``2 * concurrency`` are in flight. A
rerun is harmless even without the checkpoint, because every task is idempotent; the checkpoint
only saves the time. Failed items are not recorded, so a rerun retries them.
"""

from __future__ import annotations

import concurrent.futures as futures
import hashlib
import json
import logging
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from storage.errors import NotifyError
from worker.runtime.backfill_items import BackfillItem

logger = logging.getLogger(__name__)

DEFAULT_STATE_DIR = Path(".notify-worker/backfill")
EXIT_INTERRUPTED = 130
RESUME_HINT = "run the same command again to resume"
DONE_STATUSES = ("ok", "skipped", "enqueued")
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_MAX_SHOWN_FAILURES = 20


@dataclass(frozen=True)
class Failure:
    item_id: str
    error_code: str
    error_message: str


@dataclass
class BackfillSummary:
    name: str
    checkpoint: Path
    dry_run: bool = False
    enqueue: bool = False
    done: int = 0  # finished by this run: ok, skipped by the task, or enqueued
    already_done: int = 0  # skipped because the checkpoint says a previous run did them
    planned: int = 0  # dry run: would run
    statuses: Counter = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    interrupted: bool = False
    aborted: str | None = None  # the item source failed part-way (e.g. a bad input line)
    duration: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return 1 if self.failures or self.aborted else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "checkpoint": str(self.checkpoint),
            "dry_run": self.dry_run,
            "enqueue": self.enqueue,
            "done": self.done,
            "already_done": self.already_done,
            "planned": self.planned,
            "statuses": dict(self.statuses),
            "failed": len(self.failures),
            "failures": [f.__dict__ for f in self.failures],
            "interrupted": self.interrupted,
            "aborted": self.aborted,
            "duration_seconds": round(self.duration, 3),
        }


# --- the checkpoint -------------------------------------------------------------------------


def run_key(name: str, args: Mapping[str, Any]) -> str:
    """``{name}-{hash of the arguments}``: the same command finds the same checkpoint."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"backfill name must be lower-case words joined by '-', not {name!r}")
    blob = json.dumps({"name": name, "args": args}, sort_keys=True, default=str)
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


class Checkpoint:
    """A local append-only file of finished item ids, one a line.

    Appended and flushed as each item finishes, so a crash loses at most the items running at
    that moment (and those are idempotent). A sibling ``.json`` file records the arguments, for
    the operator wondering what a checkpoint belongs to.
    """

    def __init__(self, state_dir: Path, name: str, args: Mapping[str, Any]) -> None:
        self.key = run_key(name, args)
        self.path = Path(state_dir) / f"{self.key}.done"
        self._args = {"name": name, "args": args}
        self._file: TextIO | None = None

    def load(self) -> set[str]:
        try:
            with self.path.open(encoding="utf-8") as lines:
                return {line.strip() for line in lines if line.strip()}
        except FileNotFoundError:
            return set()

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)

    def add(self, item_id: str) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            meta = self.path.with_suffix(".json")
            if not meta.exists():
                meta.write_text(json.dumps(self._args, indent=2, sort_keys=True, default=str))
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(item_id + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# --- running ----------------------------------------------------------------------------------


Handler = Callable[[dict[str, Any]], Mapping[str, Any]]
Sender = Callable[[str, dict[str, Any], str | None], Any]


def _default_sender(task_name: str, kwargs: dict[str, Any], queue: str | None) -> Any:
    from worker.client import send_by_name

    if queue is None:
        return send_by_name(task_name, kwargs)
    from worker.runtime.app import app

    return app.send_task(task_name, kwargs=kwargs, queue=queue)


def _failed(code: str, message: str) -> dict[str, Any]:
    return {"status": "failed", "error_code": code, "error_message": message}


def _as_item(raw: BackfillItem | tuple[str, Mapping[str, Any]]) -> BackfillItem:
    item = raw if isinstance(raw, BackfillItem) else BackfillItem(raw[0], raw[1])
    if not item.id or "\n" in item.id:
        raise ValueError(f"bad backfill item id {item.id!r}")
    return item


@dataclass
class _Runner:
    handler: Handler | None
    task_name: str | None
    enqueue: bool
    wait: bool
    wait_timeout: float
    sender: Sender

    def __call__(self, item: BackfillItem) -> Mapping[str, Any]:
        """Run one item; never raises an ordinary exception (it becomes a failed result)."""
        kwargs = dict(item.kwargs)
        try:
            if not self.enqueue:
                assert self.handler is not None
                return self.handler(kwargs)
            assert self.task_name is not None
            result = self.sender(self.task_name, kwargs, item.queue)
            if not self.wait:
                return {"status": "enqueued", "task_id": result.id}
            value = result.get(timeout=self.wait_timeout, propagate=False)
            if isinstance(value, BaseException):
                return _failed("task_error", f"{type(value).__name__}: {value}")
            return value
        except NotifyError as error:
            return error.as_result()
        except Exception as error:
            # Ids only in the log line; the traceback is for debugging at DEBUG level.
            logger.debug("backfill item %s raised", item.id, exc_info=True)
            text = f"{type(error).__name__}: {error}"
            code = "timeout" if type(error).__name__ == "TimeoutError" else "internal_error"
            return _failed(code, text[:500])


def run_backfill(
    items: Iterable[BackfillItem | tuple[str, Mapping[str, Any]]],
    *,
    name: str,
    args: Mapping[str, Any],
    handler: Handler | None = None,
    task_name: str | None = None,
    dry_run: bool = False,
    concurrency: int = 1,
    enqueue: bool = False,
    wait: bool = False,
    wait_timeout: float = 3600.0,
    state_dir: Path = DEFAULT_STATE_DIR,
    total: int | None = None,
    restart: bool = False,
    console: Console | None = None,
    sender: Sender | None = None,
    show_planned: bool = False,
) -> BackfillSummary:
    """Run every item once (resuming from the checkpoint); see the module docstring.

    ``args`` are the backfill's selection arguments: they name the checkpoint, so leave out
    what does not change the work (``concurrency``, ``enqueue``...).
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if enqueue and not task_name:
        raise ValueError("enqueue needs a task name")
    if not enqueue and handler is None and not dry_run:
        raise ValueError("an in-process backfill needs a handler")
    console = console or Console(stderr=True)
    checkpoint = Checkpoint(state_dir, name, args)
    if restart and not dry_run:
        checkpoint.reset()
    done_ids = set() if restart else checkpoint.load()
    summary = BackfillSummary(name, checkpoint.path, dry_run=dry_run, enqueue=enqueue)
    runner = _Runner(handler, task_name, enqueue, wait, wait_timeout, sender or _default_sender)
    started = time.monotonic()

    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[counts]}"),
        console=console,
    )
    bar = progress.add_task(f"backfill {name}", total=total, counts="")
    running: dict[Future, BackfillItem] = {}

    def show() -> None:
        counts = " ".join(f"{k} {v}" for k, v in sorted(summary.statuses.items()))
        if summary.already_done:
            counts += f" already-done {summary.already_done}"
        if summary.failures:
            counts += f" failed {len(summary.failures)}"
        progress.update(bar, counts=counts.strip())

    def finish(item: BackfillItem, result: Mapping[str, Any]) -> None:
        status = result.get("status") if isinstance(result, Mapping) else None
        if status in DONE_STATUSES:
            summary.done += 1
            summary.statuses[status] += 1
            checkpoint.add(item.id)
        else:
            result = result if isinstance(result, Mapping) else {}
            summary.failures.append(
                Failure(
                    item.id,
                    str(result.get("error_code") or "bad_result"),
                    str(result.get("error_message") or f"unexpected result status {status!r}"),
                )
            )
        progress.advance(bar)
        show()

    def collect(block: bool) -> None:
        if not running:
            return
        finished, _ = futures.wait(
            list(running), timeout=0.2 if block else 0, return_when=futures.FIRST_COMPLETED
        )
        for future in finished:
            item = running.pop(future)
            if not future.cancelled():
                finish(item, future.result())

    def drain() -> None:
        for future in running:
            future.cancel()  # not started yet: left for the next run
        while running:
            collect(block=True)  # cancelled futures count as finished and are dropped

    stop = _CtrlC()
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"backfill-{name}")
    try:
        with progress, stop:
            try:
                for raw in _guarded(items):
                    stop.check()
                    item = _as_item(raw)
                    if item.id in done_ids:
                        summary.already_done += 1
                        progress.advance(bar)
                        show()
                    elif item.error is not None:
                        finish(item, item.error.as_result())
                    elif dry_run:
                        summary.planned += 1
                        if show_planned:
                            progress.console.print(
                                f"would run {item.id}", highlight=False, soft_wrap=True
                            )
                        progress.advance(bar)
                    else:
                        while len(running) >= 2 * concurrency:
                            collect(block=True)
                            stop.check()
                        running[pool.submit(runner, item)] = item
                        collect(block=False)
                while running:
                    collect(block=True)
                    stop.check()
            except KeyboardInterrupt:
                summary.interrupted = True
                progress.update(
                    bar, description=f"backfill {name} (stopping: waiting for running items)"
                )
                drain()
            except _SourceFailed as failure:
                # Items already taken from the source are fine: let them finish.
                summary.aborted = failure.error.message
                while running:
                    collect(block=True)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        checkpoint.close()
        summary.duration = time.monotonic() - started
    return summary


class _CtrlC:
    """Ctrl-C as a flag, checked between items, so it never lands half-way through recording
    one. A second Ctrl-C raises KeyboardInterrupt at once (stop without waiting)."""

    def __init__(self) -> None:
        self.pressed = threading.Event()
        self._previous: Any = None

    def __enter__(self) -> _CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.pressed.is_set():
            raise KeyboardInterrupt
        self.pressed.set()

    def check(self) -> None:
        if self.pressed.is_set():
            raise KeyboardInterrupt


class _SourceFailed(Exception):
    def __init__(self, error: NotifyError) -> None:
        super().__init__(error.message)
        self.error = error


def _guarded(items: Iterable[Any]) -> Iterator[Any]:
    """The item source, with its NotifyErrors (a bad input line, an S3 error) set apart."""
    iterator = iter(items)
    while True:
        try:
            raw = next(iterator)
        except StopIteration:
            return
        except NotifyError as error:
            raise _SourceFailed(error) from error
        yield raw


# --- reporting ---------------------------------------------------------------------------------


def print_summary(summary: BackfillSummary, console: Console | None = None) -> None:
    """The end-of-run table, failures with reasons, and what to do next."""
    console = console or Console(stderr=True)
    table = Table(title=f"backfill {summary.name}", show_edge=False, show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    if summary.dry_run:
        table.add_row("would run (dry run: nothing was done)", str(summary.planned))
    else:
        label = "enqueued/done" if summary.enqueue else "done"
        table.add_row(label, str(summary.done))
        for status, count in sorted(summary.statuses.items()):
            table.add_row(f"  {status}", str(count))
    table.add_row("skipped as already done", str(summary.already_done))
    table.add_row("failed", str(len(summary.failures)))
    table.add_row("duration", f"{summary.duration:.1f}s")
    console.print(table)
    for failure in summary.failures[:_MAX_SHOWN_FAILURES]:
        # Text, not markup: a message may contain [brackets].
        console.print(
            Text.assemble(
                ("failed ", "red"),
                f"{failure.item_id}: {failure.error_code}: {failure.error_message}",
            ),
            soft_wrap=True,
        )
    hidden = len(summary.failures) - _MAX_SHOWN_FAILURES
    if hidden > 0:
        console.print(f"... and {hidden} more failures")
    if summary.aborted:
        console.print(Text.assemble(("stopped: ", "red"), summary.aborted), soft_wrap=True)
    if summary.interrupted:
        console.print(
            f"interrupted; checkpoint saved in {summary.checkpoint}: {RESUME_HINT}",
            soft_wrap=True,
        )
    elif summary.failures and not summary.dry_run:
        console.print(
            f"{len(summary.failures)} failed; fix the cause and {RESUME_HINT} "
            "(finished items are skipped, failed ones are retried)"
        )
