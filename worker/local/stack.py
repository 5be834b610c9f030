"""A whole local stack in one context manager: Redis, S3 and real worker processes.

Used by ``notify-worker demo`` and by the test rig, so both run the same parts: Redis from
``REDIS_URL`` (or a private redis-server when none answers), S3 from ``S3_ENDPOINT_URL`` (or an
embedded moto server over HTTP), and ``notify-worker worker`` as prefork subprocesses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from worker.local.servers import LocalRedis, embedded_s3, ensure_redis, use_fake_credentials_if_none


@dataclass
class WorkerProcess:
    """``notify-worker worker`` in a subprocess (prefork pool: time limits and
    reject-on-worker-lost behave as in production)."""

    process: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def children(self) -> list[int]:
        import psutil

        try:
            return [c.pid for c in psutil.Process(self.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the whole worker, children included: a machine dying mid-task."""
        for pid in [*self.children(), self.pid]:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(10)

    def kill_group(self) -> None:
        """SIGKILL the worker's whole process group at once (started with ``process_group``):
        every process of a machine dying in the same instant."""
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # warm shutdown: finish or requeue
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL if the parent dies (Linux), so a crashed test
    run or demo never leaves workers behind."""
    import ctypes

    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def start_worker_process(
    env: Mapping[str, str],
    log_path: Path,
    *,
    concurrency: int = 2,
    queues: str | None = None,
    hostname: str | None = None,
    extra_args: Sequence[str] = (),
    ready_timeout: float = 60,
    process_group: bool = False,
) -> WorkerProcess:
    """Start a prefork worker and wait until its log says it is ready.

    ``extra_args`` go to ``celery worker`` as they are (e.g. ``--include=tests.poison_tasks``).
    ``process_group``: the worker leads a process group of its own (see ``kill_group``).
    """
    args = [
        sys.executable,
        "-m",
        "worker",
        "worker",
        f"--concurrency={concurrency}",
        "--loglevel=INFO",
    ]
    if queues:
        args.append(f"--queues={queues}")
    name = hostname or f"notify-{os.getpid()}-{time.monotonic_ns()}@%h"
    args.append(f"--hostname={name}")
    args.extend(extra_args)
    log_file = open(log_path, "ab")  # noqa: SIM115 - owned by the subprocess
    process = subprocess.Popen(
        args,
        env=dict(env),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        **({"process_group": 0} if process_group else {}),
    )
    log_file.close()
    handle = WorkerProcess(process, log_path)
    _wait_ready(handle, env, ready_timeout)
    return handle


def _wait_ready(handle: WorkerProcess, env: Mapping[str, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if handle.process.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{handle.log()[-4000:]}")
        if "ready." in handle.log():
            return
        time.sleep(0.2)
    handle.kill()
    raise RuntimeError(f"worker not ready after {timeout}s:\n{handle.log()[-4000:]}")


@dataclass
class LocalStack:
    redis_url: str
    s3_endpoint: str | None
    env: dict[str, str]
    workdir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_worker(self, **options: object) -> WorkerProcess:
        log_path = self.workdir / f"worker-{len(self.workers) + 1}.log"
        handle = start_worker_process(self.env, log_path, **options)  # type: ignore[arg-type]
        self.workers.append(handle)
        return handle


@contextmanager
def local_stack(
    workdir: Path, *, embedded: bool | None = None, environment: str | None = None
) -> Iterator[LocalStack]:
    """Bring up Redis and S3 and point this process's settings at them.

    ``embedded``: None means "embedded moto unless S3_ENDPOINT_URL is set".
    """
    from storage.settings import reload_settings
    from worker.runtime.redis_state import reset_redis
    from worker.runtime.settings import DEFAULT_REDIS_URL, reload_worker_settings

    workdir.mkdir(parents=True, exist_ok=True)
    saved = dict(os.environ)
    with ExitStack() as stack:
        local: LocalRedis = ensure_redis(os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL)
        stack.callback(local.stop)
        os.environ["REDIS_URL"] = local.url
        endpoint = os.environ.get("S3_ENDPOINT_URL")
        if embedded or (embedded is None and not endpoint):
            endpoint = stack.enter_context(embedded_s3())
            os.environ["S3_ENDPOINT_URL"] = endpoint
            use_fake_credentials_if_none()
        if environment:
            os.environ["NOTIFY_ENVIRONMENT"] = environment
        reload_worker_settings()
        reload_settings()
        reset_redis()
        handle = LocalStack(local.url, endpoint, dict(os.environ), workdir)
        try:
            yield handle
        finally:
            for worker in handle.workers:
                worker.stop()
            os.environ.clear()
            os.environ.update(saved)
            reload_worker_settings()
            reload_settings()
            reset_redis()
