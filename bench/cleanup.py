"""Benchmark: the cleanup sweep against deleting one object at a time, on a moto server.

Starts moto's server in this process (``ThreadedMotoServer``, real HTTP on a free port), seeds
N expired objects (default 100,000) straight into moto's in-process backend — the server shares
it, and this is far faster than N PutObject calls — then times, on the same server:

* the sweep: ``tasks.cleanup.sweep.sweep(purpose, dry_run=False)`` (listing, an audit-log
  PutObject and one DeleteObjects per 1,000 keys);
* the baseline: the same listing, then one DeleteObject per key, sequentially.

S3 requests are counted per operation with a botocore ``before-send`` hook. The floor is 3 per
1,000 keys (one list page, one audit write, one DeleteObjects); the sweep adds one
ListMultipartUploads. A plain script, not a test:

    python bench/cleanup.py [--objects N] [--baseline-sample M] [--purpose P] [--json]

``--baseline-sample M`` times one-at-a-time deletes of only M keys and scales the time to N
(moto's per-key DeleteObject cost does not depend on the bucket's size); default 10,000, and
0 deletes all N one by one (about 15 minutes for 100,000 on a 2-core sandbox).
``--purpose csv-upload`` sweeps CSV uploads with an empty, complete job state (no Redis
needed); add ``--csv-heads`` to measure the HEAD per candidate made when that state may be
incomplete (or with NOTIFY_CLEANUP_CSV_VERIFY=always).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

for _name in list(os.environ):
    if _name.startswith(("S3_BUCKET_", "NOTIFY_")) or _name == "S3_ENDPOINT_URL":
        del os.environ[_name]
os.environ.update(
    {
        "NOTIFY_ENVIRONMENT": "test",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
)

from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.s3.models import s3_backends  # noqa: E402

from storage import admin  # noqa: E402
from storage.client import make_client  # noqa: E402
from storage.listing import iter_pages  # noqa: E402
from storage.settings import get_settings, reload_settings  # noqa: E402
from tasks.cleanup.policies import CsvJobState, policy_for  # noqa: E402
from tasks.cleanup.sweep import sweep  # noqa: E402
from worker.local.servers import embedded_s3  # noqa: E402

SERVICE = "9d3f4d1e-4a4b-4c5e-8f60-1a2b3c4d5e6f"


def key_for(purpose: str) -> str:
    if purpose == "csv-upload":
        return f"service-{SERVICE}-notify/{uuid.uuid4()}.csv"
    if purpose == "logo":
        return f"temp-{uuid.uuid4()}.png"
    if purpose == "report-downloads":
        return f"notifications_report/{uuid.uuid4()}.csv"
    return f"service-{SERVICE}/{uuid.uuid4()}.pdf"


def seed(purpose: str, count: int, days: float = 30) -> float:
    """N objects of 1 KiB, LastModified ``days`` ago, straight into moto's backend."""
    started = time.perf_counter()
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    bucket = get_settings().bucket(purpose)
    when = (datetime.now(UTC) - timedelta(days=days)).replace(tzinfo=None)
    body = b"x" * 1024
    for _ in range(count):
        key = key_for(purpose)
        backend.put_object(bucket, key, body, encryption="AES256").last_modified = when
    return time.perf_counter() - started


class OperationTimer:
    """Seconds spent per S3 operation, from before-call to after-call (request and response)."""

    def __init__(self, client: Any) -> None:
        self.seconds: Counter[str] = Counter()
        self._started: dict[int, float] = {}
        client.meta.events.register("before-call.s3", self._before)
        client.meta.events.register("after-call.s3", self._after)

    def _before(self, model: Any, context: Any, **_: Any) -> None:
        self._started[id(context)] = time.perf_counter()

    def _after(self, model: Any, context: Any, **_: Any) -> None:
        began = self._started.pop(id(context), None)
        if began is not None:
            self.seconds[model.name] += time.perf_counter() - began

    def rounded(self) -> dict[str, float]:
        return {name: round(value, 2) for name, value in self.seconds.items()}


def counting_client() -> tuple[Any, Counter[str], OperationTimer]:
    client = make_client()
    sent: Counter[str] = Counter()
    client.meta.events.register(
        "before-send.s3", lambda event_name, **_: sent.update([event_name.rsplit(".", 1)[1]])
    )
    return client, sent, OperationTimer(client)


def run_sweep(purpose: str, csv_heads: bool = False) -> dict[str, Any]:
    client, sent, timer = counting_client()
    policy = None
    if purpose == "csv-upload":
        now = datetime.now(UTC)
        bucket = get_settings().bucket(purpose)
        jobs = CsvJobState(pending=dict, complete=lambda: not csv_heads)
        policy = policy_for(purpose, as_of=now, now=now, bucket=bucket, jobs=jobs, client=client)
    started = time.perf_counter()
    result = sweep(purpose, dry_run=False, max_deletions=10**9, client=client, policy=policy)
    seconds = time.perf_counter() - started
    assert result.status == "ok", result.as_dict()
    return {
        "seconds": seconds,
        "deleted": result.deleted,
        "requests": dict(sent),
        "seconds_by_operation": timer.rounded(),
    }


def run_baseline(purpose: str, count: int, sample: int) -> dict[str, Any]:
    """List, then DeleteObject per key; only ``sample`` keys deleted, time scaled to all."""
    client, sent, timer = counting_client()
    bucket = get_settings().bucket(purpose)
    started = time.perf_counter()
    keys: list[str] = []
    for page in iter_pages(bucket, client=client):
        keys.extend(o.key for o in page)
    listed = time.perf_counter() - started
    started = time.perf_counter()
    for key in keys[:sample]:
        client.delete_object(Bucket=bucket, Key=key)
    deleting = time.perf_counter() - started
    per_key = deleting / max(min(sample, len(keys)), 1)
    return {
        "seconds": listed + per_key * count,
        "measured_deletes": min(sample, len(keys)),
        "list_seconds": listed,
        "per_key_ms": per_key * 1000,
        "requests": dict(sent),
        "seconds_by_operation": timer.rounded(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--baseline-sample", type=int, default=10_000)
    parser.add_argument("--purpose", default="transient-letters")
    parser.add_argument("--csv-heads", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    count = args.objects
    sample = min(args.baseline_sample or count, count)

    with embedded_s3() as endpoint:
        os.environ["S3_ENDPOINT_URL"] = endpoint
        reload_settings()
        admin.create_buckets()

        seed_seconds = seed(args.purpose, count)
        swept = run_sweep(args.purpose, args.csv_heads)
        seed(args.purpose, count)
        baseline = run_baseline(args.purpose, count, sample)

    floor = 3 * math.ceil(count / 1000)
    total = sum(swept["requests"].values())
    report = {
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "purpose": args.purpose,
        "objects": count,
        "seed_seconds": round(seed_seconds, 2),
        "sweep_seconds": round(swept["seconds"], 2),
        "sweep_deleted": swept["deleted"],
        "sweep_requests": swept["requests"],
        "sweep_requests_total": total,
        "sweep_seconds_by_operation": swept["seconds_by_operation"],
        "floor": floor,
        "over_floor": total - floor,
        "baseline_seconds": round(baseline["seconds"], 2),
        "baseline_measured_deletes": baseline["measured_deletes"],
        "baseline_per_key_ms": round(baseline["per_key_ms"], 3),
        "baseline_requests": baseline["requests"],
        "baseline_list_seconds": round(baseline["list_seconds"], 2),
        "baseline_seconds_by_operation": baseline["seconds_by_operation"],
        "speedup": round(baseline["seconds"] / swept["seconds"], 1),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, value in report.items():
            print(f"{name:>26}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
