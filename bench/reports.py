"""Benchmark: a 1M-row report export into moto's S3 server over HTTP; rows/s and peak RSS.

Each size runs in a fresh subprocess that reports its own peak RSS (``ru_maxrss``), so the
figures for 100k and 1M rows are comparable and untouched by the parent (which hosts the moto
server in a thread). The rows come from a synthetic plug-in source registered through
``NOTIFY_REPORT_SOURCES`` like any plug-in: six columns shaped like the notifications report,
1 row in 100 with a recipient that needs neutralising, built from pre-made strings so the
figure measures the export (csv, neutralising, parts over HTTP), not the row generator.
Production part size (8 MiB). Targets: >= 100,000 rows/s; RSS growth 100k -> 1M < 30 MiB.

    python bench/reports.py [--rows 100000 1000000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
SERVICE = "6f1d2a8e-0b4c-4d1e-9a57-3c2b1e0f9d84"
TARGET_ROWS_PER_SECOND = 100_000
TARGET_GROWTH_MIB = 30
HEADER = ("notification_id", "upload_id", "row_number", "recipient", "template_id", "template_type")


def synthetic_rows(service_id: str, params: Mapping[str, Any]) -> tuple[tuple, Iterator]:
    """The plug-in source: ``rows`` rows, cheap to make."""
    count = int(params.get("rows", 1000))
    ids = [str(uuid.uuid4()) for _ in range(1024)]
    phones = [f"4477009{n:05d}" for n in range(1024)]
    upload_id, template_id = str(uuid.uuid4()), str(uuid.uuid4())

    def rows() -> Iterator[tuple]:
        for n in range(1, count + 1):
            i = n & 1023
            recipient = "+ 44 7700 900" if n % 100 == 0 else phones[i]
            yield (ids[i], upload_id, n, recipient, template_id, "sms")

    return HEADER, rows()


def max_rss_mib() -> float:
    """Peak RSS of this process image.

    Linux keeps ``ru_maxrss`` across fork+exec, so a child would inherit its parent's peak (the
    parent hosts moto and its objects); VmHWM belongs to this image alone. ``ru_maxrss``
    elsewhere.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(rows: int) -> None:
    """Run one export in this fresh process and print its figures as JSON."""
    sys.path[:0] = [str(ROOT), str(BENCH)]
    from storage.client import get_client
    from tasks.reports.generate import generate_report

    # Time in CompleteMultipartUpload: serial, at the end, and mostly moto assembling the parts
    # in memory (real S3 is quick). UploadPart time overlaps encoding (background thread).
    s3_seconds = [0.0]
    started_call: dict[str, float] = {}

    def before(model: Any, **_: Any) -> None:
        started_call[model.name] = time.perf_counter()

    def after(model: Any, **_: Any) -> None:
        if model.name == "CompleteMultipartUpload":
            s3_seconds[0] += time.perf_counter() - started_call[model.name]

    events = get_client().meta.events
    events.register("before-call.s3", before)
    events.register("after-call.s3", after)

    baseline = max_rss_mib()
    started, cpu = time.perf_counter(), time.process_time()
    result = generate_report(str(uuid.uuid4()), SERVICE, "bench-rows", {"rows": rows})
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert result["status"] == "ok" and result["rows"] == rows, result
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds": round(seconds, 3),
                "rows_per_second": round(rows / seconds),
                "cpu_seconds": round(cpu, 3),
                "complete_seconds": round(s3_seconds[0], 3),
                "size_mib": round(result["size_bytes"] / 2**20, 1),
                "baseline_rss_mib": round(baseline, 1),
                "peak_rss_mib": round(max_rss_mib(), 1),
            }
        )
    )


def run_child(rows: int, env: dict[str, str]) -> dict[str, Any]:
    import requests

    # A clean moto (its objects live in this process) and the buckets again.
    requests.post(f"{env['S3_ENDPOINT_URL']}/moto-api/reset", timeout=30).raise_for_status()
    from storage.admin import create_buckets

    create_buckets()
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(rows)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"child for {rows:,} rows failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=1, help="runs per size (best is kept)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    sys.path.insert(0, str(ROOT))
    env = {
        **os.environ,
        "NOTIFY_ENVIRONMENT": "local",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "eu-west-1",
        "NOTIFY_REPORT_SOURCES": "bench-rows=reports:synthetic_rows",
        "NOTIFY_LOG_LEVEL": "WARNING",
    }
    env.pop("NOTIFY_REPORT_PART_SIZE", None)  # production part size
    os.environ.update(env)
    from storage.settings import reload_settings
    from worker.local.servers import embedded_s3

    with embedded_s3() as endpoint:
        env["S3_ENDPOINT_URL"] = os.environ["S3_ENDPOINT_URL"] = endpoint
        reload_settings()
        results = {}
        for rows in args.rows:
            runs = [run_child(rows, env) for _ in range(args.repeat)]
            results[rows] = max(runs, key=lambda r: r["rows_per_second"])
            r = results[rows]
            print(
                f"{rows:>10,} rows  {r['seconds']:7.2f} s ({r['cpu_seconds']:.2f} s CPU)  "
                f"{r['rows_per_second']:>9,} rows/s  "
                f"{r['size_mib']:7.1f} MiB  peak RSS {r['peak_rss_mib']:6.1f} MiB "
                f"(after imports {r['baseline_rss_mib']:.1f})  of which completing the upload "
                f"{r['complete_seconds']:.2f} s",
                flush=True,
            )
    small, big = min(results), max(results)
    growth = results[big]["peak_rss_mib"] - results[small]["peak_rss_mib"]
    speed = results[big]["rows_per_second"]
    print(
        f"rows/s at {big:,}: {speed:,} (target >= {TARGET_ROWS_PER_SECOND:,}: "
        f"{'met' if speed >= TARGET_ROWS_PER_SECOND else 'NOT met'})"
    )
    print(
        f"peak RSS growth {small:,} -> {big:,} rows: {growth:+.1f} MiB (target < "
        f"{TARGET_GROWTH_MIB} MiB: {'met' if growth < TARGET_GROWTH_MIB else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
