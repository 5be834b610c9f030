"""The backfill framework: resume, dry run, concurrency, failures, Ctrl-C."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from storage.errors import InvalidInput, TransientError
from worker.backfill.framework import (
    EXIT_INTERRUPTED,
    RESUME_HINT,
    BackfillItem,
    Checkpoint,
    print_summary,
    run_backfill,
    run_key,
)


def quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def items(n: int) -> list[tuple[str, dict]]:
    return [(f"item-{i}", {"n": i}) for i in range(n)]


class Recorder:
    """A handler that records what it ran (thread-safe) and can fail chosen items."""

    def __init__(self, fail: set[int] = frozenset(), delay: float = 0.0) -> None:
        self.ran: list[int] = []
        self.fail = fail
        self.delay = delay
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def __call__(self, kwargs: dict) -> dict:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
            with self.lock:
                self.ran.append(kwargs["n"])
            if kwargs["n"] in self.fail:
                return {"status": "failed", "error_code": "boom", "error_message": "it broke"}
            return {"status": "ok"}
        finally:
            with self.lock:
                self.active -= 1


def run(source, handler, tmp_path: Path, **options):
    options.setdefault("name", "test")
    options.setdefault("args", {"a": 1})
    return run_backfill(source, handler=handler, state_dir=tmp_path, console=quiet(), **options)


def test_runs_every_item_and_records_it(tmp_path):
    handler = Recorder()
    summary = run(items(5), handler, tmp_path, total=5)
    assert sorted(handler.ran) == [0, 1, 2, 3, 4]
    assert summary.done == 5 and summary.statuses == {"ok": 5}
    assert summary.exit_code == 0
    assert sorted(summary.checkpoint.read_text().split()) == [f"item-{i}" for i in range(5)]
    # The arguments sit next to the checkpoint, for the operator.
    assert '"a": 1' in summary.checkpoint.with_suffix(".json").read_text()


def test_rerun_skips_what_is_done(tmp_path):
    run(items(3), Recorder(), tmp_path)
    handler = Recorder()
    summary = run(items(5), handler, tmp_path)
    assert sorted(handler.ran) == [3, 4]
    assert summary.already_done == 3 and summary.done == 2


def test_checkpoint_is_keyed_by_name_and_arguments(tmp_path):
    run(items(3), Recorder(), tmp_path, args={"a": 1})
    handler = Recorder()
    run(items(3), handler, tmp_path, args={"a": 2})
    assert sorted(handler.ran) == [0, 1, 2]
    assert run_key("x", {"a": 1, "b": 2}) == run_key("x", {"b": 2, "a": 1})
    assert run_key("x", {"a": 1}) != run_key("y", {"a": 1})
    with pytest.raises(ValueError):
        run_key("../etc", {})


def test_restart_ignores_the_checkpoint(tmp_path):
    run(items(3), Recorder(), tmp_path)
    handler = Recorder()
    summary = run(items(3), handler, tmp_path, restart=True)
    assert sorted(handler.ran) == [0, 1, 2] and summary.already_done == 0


def test_dry_run_does_nothing(tmp_path):
    handler = Recorder()
    summary = run(items(4), handler, tmp_path, dry_run=True)
    assert handler.ran == []
    assert summary.planned == 4 and summary.done == 0
    assert not summary.checkpoint.exists()
    assert summary.exit_code == 0


def test_dry_run_after_a_partial_run_counts_what_is_left(tmp_path):
    run(items(2), Recorder(), tmp_path)
    summary = run(items(5), None, tmp_path, dry_run=True)
    assert summary.planned == 3 and summary.already_done == 2


def test_failures_are_reported_and_retried_next_time(tmp_path):
    handler = Recorder(fail={1, 3})
    summary = run(items(5), handler, tmp_path)
    assert summary.done == 3
    assert sorted((f.item_id, f.error_code) for f in summary.failures) == [
        ("item-1", "boom"),
        ("item-3", "boom"),
    ]
    assert summary.exit_code == 1
    out = io.StringIO()
    print_summary(summary, Console(file=out, width=120))
    text = out.getvalue()
    assert "item-1: boom: it broke" in text and RESUME_HINT in text
    # The rerun retries only the failed ones.
    again = Recorder()
    second = run(items(5), again, tmp_path)
    assert sorted(again.ran) == [1, 3] and second.exit_code == 0


def test_exceptions_become_failures_with_their_code(tmp_path):
    def handler(kwargs: dict) -> dict:
        if kwargs["n"] == 0:
            raise InvalidInput("bad id", code="invalid_id")
        if kwargs["n"] == 1:
            raise TransientError("throttled")
        if kwargs["n"] == 2:
            raise RuntimeError("unexpected")
        if kwargs["n"] == 3:
            return {"no": "status"}
        return {"status": "skipped"}

    summary = run(items(5), handler, tmp_path)
    codes = {f.item_id: f.error_code for f in summary.failures}
    assert codes == {
        "item-0": "invalid_id",
        "item-1": "transient_error",
        "item-2": "internal_error",
        "item-3": "bad_result",
    }
    assert summary.statuses == {"skipped": 1}


def test_items_known_to_be_bad_are_failed_without_running(tmp_path):
    handler = Recorder()
    source = [
        BackfillItem("good", {"n": 1}),
        BackfillItem("bad", error=InvalidInput("no template info", code="no_template")),
    ]
    summary = run(source, handler, tmp_path)
    assert handler.ran == [1]
    assert [(f.item_id, f.error_code) for f in summary.failures] == [("bad", "no_template")]


def test_a_source_error_stops_submitting_and_keeps_what_finished(tmp_path):
    def source():
        yield from items(3)
        raise InvalidInput("line 4: not JSON", code="invalid_line")

    summary = run(source(), Recorder(), tmp_path)
    assert summary.done == 3
    assert summary.aborted == "line 4: not JSON"
    assert summary.exit_code == 1


def test_concurrency_runs_items_in_parallel_with_bounded_lookahead(tmp_path):
    consumed = []

    def source():
        for item in items(12):
            consumed.append(item[0])
            yield item

    handler = Recorder(delay=0.1)
    started = time.monotonic()
    summary = run(source(), handler, tmp_path, concurrency=4)
    elapsed = time.monotonic() - started
    assert summary.done == 12
    assert handler.max_active == 4
    assert elapsed < 0.9  # 12 x 0.1 s serially would be 1.2 s
    assert len(consumed) == 12


def test_keyboard_interrupt_waits_for_running_items_and_saves_them(tmp_path):
    handler = Recorder(delay=0.2)

    def source():
        yield from items(4)
        raise KeyboardInterrupt  # what Ctrl-C does in the main thread

    summary = run(source(), handler, tmp_path, concurrency=2)
    assert summary.interrupted and summary.exit_code == EXIT_INTERRUPTED
    finished = set(Checkpoint(tmp_path, "test", {"a": 1}).load())
    # Everything that ran was recorded; nothing half-recorded.
    assert finished == {f"item-{n}" for n in handler.ran}
    again = Recorder()
    resumed = run(items(6), again, tmp_path)
    assert sorted(again.ran + handler.ran) == list(range(6))
    assert resumed.already_done == len(handler.ran)


def test_enqueue_sends_by_task_name_instead_of_running(tmp_path):
    sent = []

    class Result:
        id = "task-1"

    def sender(name, kwargs, queue):
        sent.append((name, kwargs, queue))
        return Result()

    source = [("a", {"n": 1}), BackfillItem("b", {"n": 2}, queue="csv-batches-bulk")]
    summary = run(source, None, tmp_path, enqueue=True, task_name="notify.x", sender=sender)
    assert sent == [("notify.x", {"n": 1}, None), ("notify.x", {"n": 2}, "csv-batches-bulk")]
    assert summary.statuses == {"enqueued": 2}
    assert summary.checkpoint.read_text().split() == ["a", "b"]


def test_enqueue_and_wait_takes_the_task_result(tmp_path):
    class Result:
        def __init__(self, value):
            self.value = value
            self.id = "t"

        def get(self, timeout, propagate):
            assert propagate is False
            return self.value

    values = {1: {"status": "ok"}, 2: {"status": "failed", "error_code": "x", "error_message": "y"}}
    values[3] = ValueError("task raised")

    def sender(name, kwargs, queue):
        return Result(values[kwargs["n"]])

    source = [(str(n), {"n": n}) for n in (1, 2, 3)]
    summary = run(
        source, None, tmp_path, enqueue=True, wait=True, task_name="notify.x", sender=sender
    )
    assert summary.statuses == {"ok": 1}
    assert sorted((f.item_id, f.error_code) for f in summary.failures) == [
        ("2", "x"),
        ("3", "task_error"),
    ]


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError):
        run(items(1), Recorder(), tmp_path, concurrency=0)
    with pytest.raises(ValueError):
        run(items(1), None, tmp_path, enqueue=True)
    with pytest.raises(ValueError):
        run(items(1), None, tmp_path)
    with pytest.raises(ValueError):
        run([("two\nlines", {})], Recorder(), tmp_path)


SCRIPT = textwrap.dedent(
    r"""
    import os, sys, time
    from pathlib import Path
    from rich.console import Console
    from worker.backfill.framework import print_summary, run_backfill

    def handler(kwargs):
        os.write(1, f"ran {kwargs['n']}\n".encode())  # one write: threads never interleave
        time.sleep(0.2)
        return {"status": "ok"}

    console = Console(stderr=True)
    summary = run_backfill(
        ((f"item-{n}", {"n": n}) for n in range(int(sys.argv[2]))),
        name="sigint", args={}, handler=handler, state_dir=Path(sys.argv[1]),
        concurrency=2, console=console,
    )
    print_summary(summary, console)
    sys.exit(summary.exit_code)
    """
)


def test_ctrl_c_in_a_real_process_exits_130_and_resumes(tmp_path):
    script = tmp_path / "bf.py"
    script.write_text(SCRIPT)
    state = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(state), "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # Wait until a few items have run, then press Ctrl-C.
    lines = []
    while len(lines) < 4:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        lines.append(line)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    out = "".join(lines) + out
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert RESUME_HINT in err
    first = Checkpoint(state, "sigint", {}).load()
    ran_first = {f"item-{line.split()[1]}" for line in out.splitlines() if line.startswith("ran")}
    # Every item that started was waited for and recorded; none that never started.
    assert first == ran_first
    assert 4 <= len(first) < 20
    # The same command again finishes the rest, running only what was not done.
    second = subprocess.run(
        [sys.executable, str(script), str(state), "20"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert second.returncode == 0, second.stderr
    ran_second = {
        f"item-{line.split()[1]}" for line in second.stdout.splitlines() if line.startswith("ran")
    }
    assert ran_second == {f"item-{n}" for n in range(20)} - first
    assert Checkpoint(state, "sigint", {}).load() == {f"item-{n}" for n in range(20)}
