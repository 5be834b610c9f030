"""Health checks an orchestrator can call: readiness (can this process work?) and liveness
(is this host's worker still consuming?).

Liveness never broadcasts to the fleet: each worker's consumer loop rewrites a small file
(``NOTIFY_LIVENESS_FILE``) every ``HEARTBEAT_SECONDS`` from a timer on its own event loop, the
loop that also takes messages off the broker. If the loop stalls, the main process hangs or
dies, or the consumer is reconnecting to a broker that does not answer, the file's time stops
moving and ``notify-worker health --liveness`` fails once it is older than
``NOTIFY_LIVENESS_MAX_AGE_SECONDS``. The check reads one local file: it answers at once.

Readiness asks the real dependencies, briefly: every configured Redis answers PING, and every
bucket answers GetBucketLocation with the configured credentials and is in ``AWS_REGION``
(one request per bucket, one attempt, short timeouts).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from celery import bootsteps

from storage.settings import env_int

logger = logging.getLogger(__name__)

FILE_ENV = "NOTIFY_LIVENESS_FILE"
MAX_AGE_ENV = "NOTIFY_LIVENESS_MAX_AGE_SECONDS"
HEARTBEAT_SECONDS = 5.0
DEFAULT_MAX_AGE_SECONDS = 30
READINESS_TIMEOUT_SECONDS = 5


def liveness_file(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return (env.get(FILE_ENV) or "").strip() or os.path.join(
        tempfile.gettempdir(), "notify-worker.alive"
    )


def max_age(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    return env_int(env, MAX_AGE_ENV, DEFAULT_MAX_AGE_SECONDS, minimum=int(HEARTBEAT_SECONDS) + 1)


@dataclass
class Report:
    """One JSON line: ``{"check", "status": "ok"|"failed", "failed": [...], ...}``."""

    check: str
    failed: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "status": "ok" if self.ok else "failed",
            "failed": self.failed,
            **self.details,
        }

    def line(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=False)


# --- liveness ----------------------------------------------------------------------------------


def write_heartbeat(path: str, hostname: str) -> None:
    """Replace the file atomically (a reader never sees half of it)."""
    payload = json.dumps({"pid": os.getpid(), "hostname": hostname, "at": round(time.time(), 3)})
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(payload)
    os.replace(temporary, path)


class LivenessHeartbeat(bootsteps.StartStopStep):
    """A consumer step: a timer on the consumer's event loop rewrites the liveness file."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.path = liveness_file()
        self.entry: Any = None

    def start(self, parent: Any) -> None:
        hostname = getattr(parent, "hostname", "") or ""

        def beat() -> None:
            try:
                write_heartbeat(self.path, hostname)
            except OSError as error:  # a full or read-only disk must not stop the worker
                logger.warning("cannot write the liveness file %s: %s", self.path, error)

        beat()
        self.entry = parent.timer.call_repeatedly(HEARTBEAT_SECONDS, beat)

    def stop(self, parent: Any) -> None:
        if self.entry is not None:
            self.entry.cancel()
            self.entry = None

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
        try:
            with open(self.path, encoding="utf-8") as handle:
                mine = json.load(handle).get("pid") == os.getpid()
            if mine:
                os.unlink(self.path)  # stopped on purpose: not alive
        except (OSError, ValueError):
            pass


def check_liveness(environ: Mapping[str, str] | None = None, now: float | None = None) -> Report:
    from storage.errors import ConfigurationError

    path = liveness_file(environ)
    try:
        limit = max_age(environ)
    except ConfigurationError as error:
        return Report("liveness", [{"what": "configuration", "message": error.message}])
    report = Report("liveness", details={"file": path, "max_age_seconds": limit})
    now = time.time() if now is None else now
    try:
        with open(path, encoding="utf-8") as handle:
            beat = json.load(handle)
        at = float(beat["at"])
        pid = int(beat["pid"])
    except FileNotFoundError:
        report.failed.append(
            {"what": "worker", "message": f"no worker heartbeat at {path}: no worker is running"}
        )
        return report
    except (OSError, ValueError, KeyError, TypeError) as error:
        report.failed.append(
            {"what": "worker", "message": f"unreadable heartbeat {path}: {type(error).__name__}"}
        )
        return report
    age = round(max(now - at, 0.0), 1)
    report.details.update({"pid": pid, "age_seconds": age})
    if not _process_exists(pid):
        report.failed.append({"what": "worker", "message": f"worker process {pid} is gone"})
    elif age > limit:
        report.failed.append(
            {
                "what": "worker",
                "message": f"worker {pid} last consumed {age}s ago (limit {limit}s): stalled, "
                "or reconnecting to an unreachable broker",
            }
        )
    return report


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, but it exists
    return True


# --- readiness ---------------------------------------------------------------------------------


def check_readiness(timeout: float = READINESS_TIMEOUT_SECONDS) -> Report:
    from storage.errors import NotifyError
    from worker.runtime import redis_urls
    from worker.runtime.settings import get_worker_settings

    report = Report("readiness")
    try:
        settings = get_worker_settings()
        redis_urls.check(settings, timeout=timeout)
        report.details["redis"] = "ok"
    except NotifyError as error:
        report.failed.append({"what": "redis", "message": error.message})
    report.details["buckets"] = len(_bucket_failures(report, timeout))
    return report


def _bucket_failures(report: Report, timeout: float) -> list[str]:
    """Every bucket answers GetBucketLocation, from ``AWS_REGION``; returns the names checked."""
    from storage.admin import bucket_region
    from storage.buckets import REGISTRY
    from storage.client import make_client
    from storage.errors import NotifyError
    from storage.settings import get_settings

    try:
        settings = get_settings()
    except NotifyError as error:
        report.failed.append({"what": "configuration", "message": error.message})
        return []
    quick = dataclasses.replace(
        settings, max_attempts=1, connect_timeout=timeout, read_timeout=timeout
    )
    client = make_client(quick)
    checked = []
    for purpose in REGISTRY:
        name = settings.bucket(purpose)
        checked.append(name)
        try:
            region = bucket_region(client, name)
        except NotifyError as error:
            report.failed.append(
                {"what": "bucket", "purpose": purpose, "bucket": name, "message": error.message}
            )
            if error.code == "s3_no_credentials":
                break  # every other bucket would say the same
            continue
        if region != settings.region:
            report.failed.append(
                {
                    "what": "bucket",
                    "purpose": purpose,
                    "bucket": name,
                    "message": f"bucket is in {region} but AWS_REGION is {settings.region}",
                }
            )
    return checked
