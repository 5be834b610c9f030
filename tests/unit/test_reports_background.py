"""The background upload thread: order kept, errors handed back, cancelled on failure."""

from __future__ import annotations

import threading

import pytest

from tasks.reports.background import BackgroundWriter


class Target:
    def __init__(self, fail_on: int | None = None, gate: threading.Event | None = None):
        self.chunks: list[bytes] = []
        self.fail_on = fail_on
        self.gate = gate
        self.threads: set[str] = set()

    def write(self, chunk: bytes) -> None:
        if self.gate is not None:
            self.gate.wait(5)
        self.threads.add(threading.current_thread().name)
        if self.fail_on is not None and len(self.chunks) == self.fail_on:
            raise OSError("connection dropped")
        self.chunks.append(chunk)


def test_chunks_arrive_in_order_from_another_thread():
    target = Target()
    with BackgroundWriter(target, max_chunks=2) as writer:
        for n in range(100):
            writer.write(b"%d," % n)
    assert b"".join(target.chunks) == b"".join(b"%d," % n for n in range(100))
    assert target.threads == {"report-upload"}


def test_an_error_in_the_thread_comes_back_to_the_caller():
    target = Target(fail_on=3)
    with pytest.raises(OSError, match="dropped"), BackgroundWriter(target, max_chunks=1) as writer:
        for n in range(50):
            writer.write(b"x%d" % n)
    assert len(target.chunks) == 3  # nothing after the failure


def test_a_failure_in_the_caller_stops_the_thread_without_writing_the_rest():
    gate = threading.Event()
    target = Target(gate=gate)
    with pytest.raises(RuntimeError), BackgroundWriter(target, max_chunks=4) as writer:
        for n in range(3):
            writer.write(b"%d" % n)
        gate.set()
        raise RuntimeError("source broke")
    assert len(target.chunks) <= 3
    assert not any(t.name == "report-upload" for t in threading.enumerate())
