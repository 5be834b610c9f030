"""``notify-worker beat`` processes for tests, each set on a Redis of the test's own.

* ``Beat`` — one beat subprocess (RedBeat scheduler), its log and whether it holds the lock;
* ``beat_redis`` — a client of the beats' own redis-server (``private_redis_url``);
* ``beats`` — a factory that starts N beats on it; all stopped at the end of the test.

Fixtures registered for every test in tests/conftest.py (``pytest_plugins``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

LOCK_TIMEOUT = 8  # seconds: how long a dead holder's lock lasts (NOTIFY_BEAT_LOCK_TIMEOUT_SECONDS)


class Beat:
    def __init__(self, tmp_path: Path, number: int, redis_url: str) -> None:
        self.log_path = tmp_path / f"beat-{number}.log"
        env = {
            "NOTIFY_BEAT_LOCK_TIMEOUT_SECONDS": str(LOCK_TIMEOUT),
            **os.environ,
            "REDIS_URL": redis_url,
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "worker", "beat", "--loglevel=INFO"],
                env=env,
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def holds_lock(self) -> bool:
        return "beat: Acquired lock" in self.log()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def beat_redis(private_redis_url: str) -> Iterator[redis.Redis]:
    """The beats' own Redis (empty, whatever else the session's Redis holds)."""
    client = redis.Redis.from_url(private_redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def beats(
    tmp_path: Path, beat_redis: redis.Redis, private_redis_url: str
) -> Iterator[Callable[[int], list[Beat]]]:
    """Factory ``start(count)``: starts ``count`` more beats; returns every beat started."""
    started: list[Beat] = []

    def start(count: int) -> list[Beat]:
        for _ in range(count):
            started.append(Beat(tmp_path, len(started) + 1, private_redis_url))
        return started

    yield start
    for beat_process in started:
        beat_process.stop()
