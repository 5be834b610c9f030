"""Benchmark of the CSV batches workflow. A plain script, not a test:

    python bench/csv_batches.py [--rows 100000,1000000] [--kinds sms,email] [--skip-e2e]
    python bench/csv_batches.py --fairness ROWS                 # small job beside a big one
    python bench/csv_batches.py --fairness-services 50x4000 [--burst-jobs N]  # between services

For each generated file (about 2% bad rows, written to a temp directory):

* **validation** — the job's own read path in this process, streaming the file from disk:
  ``CsvReader`` + ``ColumnLayout.check_row`` on every row. Rows/s per wall second and per CPU
  second (the sandbox is shared: CPU time is the steadier figure).
* **end to end** — a private redis-server, an embedded moto S3 server over HTTP and a fresh
  prefork worker (``notify-worker worker``, concurrency 1) consuming only the CSV queues, so
  the sink's queue only fills up: the time from enqueueing ``notify.csv.process_batch`` to its
  result, with every batch handed to the broker; the worker child's peak RSS (VmHWM) and CPU
  time; broker messages per 1,000 valid rows. Each fresh worker first runs a 1,000-row job
  of the same kind (printed as "warm-up"): what a worker process pays once (its S3 client,
  broker and backend connections, phone metadata, caches) is not a cost of the measured job.
  ``--cold`` skips it (the first job then pays it, as in runs before this option).

Targets (2-core machine): validation >= 115,000 rows/s (sms) and >= 200,000 (email); end to end
>= 60,000 rows/s; peak worker RSS grows < 30 MiB from 100k to 1M rows; <= 1 message / 1,000 rows.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from csv_validation import _phone  # the same UK-mobile spellings as the validation bench

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVICE_ID = "6ce466d0-fd6a-11e5-82f5-e0accb9d11a6"
TEMPLATE_ID = "f6d9a4d2-8a1f-4c5e-9a85-0fd7c7b0c0a1"
_BAD_SMS = ["12345", "07700 900 12x", "+1 (555) 0100", "077009001234567", ""]
_BAD_EMAIL = ["someone@", "a..b@example.com", "no-at-sign.example.com", "x@localhost", ""]
_HOSTS = ["example.com", "example.co.uk", "gov.uk", "digital.cabinet-office.gov.uk", "nhs.net"]


# --- files ---------------------------------------------------------------------------------------


def write_file(path: Path, kind: str, rows: int, seed: int = 2024) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(["phone number" if kind == "sms" else "email address", "name", "ref"])
        for i in range(rows):
            if rng.random() < 0.02:
                recipient = rng.choice(_BAD_SMS if kind == "sms" else _BAD_EMAIL)
            elif kind == "sms":
                recipient = _phone(rng)
            else:
                recipient = f"person.{i}@{rng.choice(_HOSTS)}"
            writer.writerow([recipient, f"Person {i}", f"REF-{i:07d}"])


# --- validation in process ------------------------------------------------------------------------

_VALIDATE = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from tasks.csv_batches.validation.columns import ColumnLayout
from tasks.csv_batches.reader import CsvReader
start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cpu, wall = time.process_time(), time.perf_counter()
with open({path!r}, "rb") as body:
    reader = CsvReader(body, max_rows=10**7)
    check_row = ColumnLayout.from_header(
        reader.header, template_type={kind!r}, placeholders=["name"]).check_row
    rows = invalid = 0
    for rows, cells in reader:
        if not check_row(cells).ok:
            invalid += 1
print(json.dumps({{"rows": rows, "invalid": invalid, "cpu": time.process_time() - cpu,
    "wall": time.perf_counter() - wall, "start_rss_kib": start_rss,
    "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


def validate(path: Path, kind: str) -> dict:
    """Validation alone, in a fresh interpreter (so its peak RSS is this file's)."""
    import json

    code = _VALIDATE.format(root=str(ROOT), path=str(path), kind=kind)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


# --- end to end ---------------------------------------------------------------------------------


def _child_stats(worker) -> tuple[int, float]:
    """Peak RSS (KiB, VmHWM) and CPU seconds of the worker's pool child."""
    import psutil

    peak = 0
    cpu = 0.0
    for pid in worker.children():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
            times = psutil.Process(pid).cpu_times()
            cpu += times.user + times.system
        except (FileNotFoundError, psutil.NoSuchProcess):
            continue
    return peak, cpu


WARMUP_ROWS = 1000


def _warmup_csv(kind: str) -> bytes:
    """A small file of the kind (every shape of good and bad row) for the job that warms a
    fresh worker up: phone metadata, caches and memory pools are then in place."""
    with tempfile.TemporaryDirectory(prefix="csv-warmup-") as tmp:
        path = Path(tmp) / "warmup.csv"
        write_file(path, kind, WARMUP_ROWS, seed=7)
        return path.read_bytes()


def end_to_end(
    files: list[tuple[str, int, Path]],
    max_rows: int,
    cold: bool = False,
    redis_url: str | None = None,
) -> list[dict]:
    """``redis_url``: a Redis already running (e.g. over TLS, bench/redis_tls.py); by default a
    private redis-server of the stack's own."""
    from storage import admin
    from storage.client import get_client
    from storage.keys import csv_upload_key
    from storage.settings import get_settings
    from worker.client import NotifyClient
    from worker.local.stack import local_stack
    from worker.runtime import queues, redis_urls
    from worker.runtime.settings import get_worker_settings

    os.environ["NOTIFY_CSV_MAX_ROWS"] = str(max_rows)
    # A private Redis: never someone else's.
    os.environ["REDIS_URL"] = redis_url or "redis://127.0.0.1:1/0"
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="csv-bench-") as workdir,
        local_stack(Path(workdir), embedded=True) as stack,
    ):
        admin.create_buckets()
        client = get_client()
        bucket = get_settings().bucket("csv-upload")
        broker = redis_urls.make_client(
            stack.redis_url, get_worker_settings(), decode_responses=False
        )
        sink_queues = [queues.DATABASE_TASKS, queues.bulk_queue(queues.DATABASE_TASKS)]
        for kind, rows, path in files:
            upload_id = str(uuid.uuid4())
            client.upload_file(
                str(path),
                bucket,
                csv_upload_key(SERVICE_ID, upload_id),
                ExtraArgs={
                    "ServerSideEncryption": "AES256",
                    "Metadata": {"notification_count": str(rows), "valid": "True"},
                },
            )
            # A fresh worker per file: its peak RSS belongs to this file alone.
            worker = stack.start_worker(
                concurrency=1, queues=f"{queues.CSV_BATCHES},{queues.CSV_BATCHES_BULK}"
            )
            try:
                time.sleep(1.0)
                warmup = None
                if not cold:
                    small = str(uuid.uuid4())
                    client.put_object(
                        Bucket=bucket,
                        Key=csv_upload_key(SERVICE_ID, small),
                        Body=_warmup_csv(kind),
                        ServerSideEncryption="AES256",
                    )
                    started = time.perf_counter()
                    _run_job(NotifyClient(), small, kind, WARMUP_ROWS)
                    warmup = time.perf_counter() - started
                    broker.delete(*sink_queues)
                baseline_rss, baseline_cpu = _child_stats(worker)
                started = time.perf_counter()
                result = _run_job(NotifyClient(), upload_id, kind, rows)
                seconds = time.perf_counter() - started
                peak_rss, cpu = _child_stats(worker)
            finally:
                worker.stop()
            messages = sum(int(broker.llen(q)) for q in sink_queues)
            broker.delete(*sink_queues)  # free the broker's memory for the next file
            results.append(
                {
                    "kind": kind,
                    "rows": rows,
                    "status": result.get("status"),
                    "dispatched": result.get("rows_dispatched"),
                    "invalid": result.get("rows_invalid"),
                    "seconds": seconds,
                    "rows_per_s": rows / seconds,
                    "worker_cpu_s": cpu - baseline_cpu,
                    "idle_rss_mib": baseline_rss / 1024,
                    "peak_rss_mib": peak_rss / 1024,
                    "messages": messages,
                    "warmup_s": warmup,
                }
            )
            print(_e2e_line(results[-1]), flush=True)
    return results


def _run_job(notify, upload_id: str, kind: str, rows: int) -> dict:
    return notify.process_csv(
        SERVICE_ID,
        upload_id,
        template_id=TEMPLATE_ID,
        template_type=kind,
        placeholders=["name"],
        notification_count=rows,
    ).get(timeout=1800)


def fairness(big_path: Path, big_rows: int) -> None:
    """A 10-row job submitted while a big job is in flight, on one default worker (every queue,
    concurrency 2): how long until all its rows are stored, and how far the big job had got."""
    from storage import admin
    from storage.client import get_client
    from storage.keys import csv_upload_key
    from storage.settings import get_settings
    from tasks.csv_batches.state import read_progress
    from worker.client import NotifyClient
    from worker.local.stack import local_stack

    os.environ["NOTIFY_CSV_MAX_ROWS"] = str(max(big_rows, 100_000))
    os.environ["REDIS_URL"] = "redis://127.0.0.1:1/0"
    with (
        tempfile.TemporaryDirectory(prefix="csv-fair-") as workdir,
        local_stack(Path(workdir), embedded=True) as stack,
    ):
        admin.create_buckets()
        client = get_client()
        bucket = get_settings().bucket("csv-upload")
        big, small = str(uuid.uuid4()), str(uuid.uuid4())
        client.upload_file(str(big_path), bucket, csv_upload_key(SERVICE_ID, big))
        client.put_object(
            Bucket=bucket,
            Key=csv_upload_key(SERVICE_ID, small),
            Body="phone number,name\n" + "".join(f"0770090{i:04d},P{i}\n" for i in range(10)),
            ServerSideEncryption="AES256",
        )
        stack.start_worker(concurrency=2)
        notify = NotifyClient()

        def send(upload_id: str, count: int) -> None:
            notify.process_csv(
                SERVICE_ID,
                upload_id,
                template_id=TEMPLATE_ID,
                template_type="sms",
                placeholders=["name"],
                notification_count=count,
            )

        send(big, big_rows)
        while (read_progress(big) or {}).get("dispatched", 0) < min(50_000, big_rows // 4):
            time.sleep(0.05)
        started = time.perf_counter()
        send(small, 10)
        while (read_progress(small) or {}).get("stored", 0) < 10:
            time.sleep(0.02)
        waited = time.perf_counter() - started
        at = read_progress(big) or {}
        print(
            f"fairness: 10-row job stored in {waited:.2f} s while the {big_rows:,}-row job had "
            f"{at.get('dispatched', 0):,} rows sent and {at.get('stored', 0):,} stored "
            f"(status {at.get('status')})"
        )


OTHER_SERVICE = "3f1a7c2e-9d4b-4e6f-8a1b-5c7d9e0f1a2b"


def fairness_services(jobs: int, rows: int, allowance: int | None) -> None:
    """One service sends ``jobs`` jobs of ``rows`` rows (below the bulk threshold: all on the
    normal lane), then another service one 10-row job, on one default worker (every queue,
    concurrency 2): how long until the 10 rows are stored, and how far the burst had got.
    ``allowance``: NOTIFY_SERVICE_BURST_JOBS for the worker (a huge one turns fairness off)."""
    from storage import admin
    from storage.client import get_client
    from storage.keys import csv_upload_key
    from storage.settings import get_settings
    from tasks.csv_batches.state import read_progress
    from worker.client import NotifyClient
    from worker.local.stack import local_stack

    os.environ["REDIS_URL"] = "redis://127.0.0.1:1/0"
    if allowance is not None:
        os.environ["NOTIFY_SERVICE_BURST_JOBS"] = str(allowance)
    body = "phone number,name\n" + "".join(
        f"07700 9{i % 100_000:05d},Person {i}\n" for i in range(1, rows + 1)
    )
    small_body = "phone number,name\n" + "".join(f"0770090{i:04d},P{i}\n" for i in range(10))
    with (
        tempfile.TemporaryDirectory(prefix="csv-fair-") as workdir,
        local_stack(Path(workdir), embedded=True) as stack,
    ):
        admin.create_buckets()
        client = get_client()
        bucket = get_settings().bucket("csv-upload")

        def put(service_id: str, text: str) -> str:
            upload_id = str(uuid.uuid4())
            client.put_object(
                Bucket=bucket,
                Key=csv_upload_key(service_id, upload_id),
                Body=text,
                ServerSideEncryption="AES256",
            )
            return upload_id

        burst = [put(SERVICE_ID, body) for _ in range(jobs)]
        small, warm = put(OTHER_SERVICE, small_body), put(OTHER_SERVICE, small_body)
        stack.start_worker(concurrency=2)
        notify = NotifyClient()

        def send(service_id: str, upload_id: str, count: int):
            return notify.process_csv(
                service_id,
                upload_id,
                template_id=TEMPLATE_ID,
                template_type="sms",
                placeholders=["name"],
                notification_count=count,
            )

        send(OTHER_SERVICE, warm, 10).get(timeout=60)  # the pool children's first job
        started = time.perf_counter()
        results = [send(SERVICE_ID, upload_id, rows) for upload_id in burst]
        sent = time.perf_counter()
        send(OTHER_SERVICE, small, 10)
        while (read_progress(small) or {}).get("stored", 0) < 10:
            time.sleep(0.02)
        waited = time.perf_counter() - sent
        stored = sum((read_progress(u) or {}).get("stored", 0) for u in burst)
        for result in results:
            result.get(timeout=600)
        while sum((read_progress(u) or {}).get("stored", 0) for u in burst) < jobs * rows:
            time.sleep(0.1)
        total = time.perf_counter() - started
        print(
            f"fairness between services (NOTIFY_SERVICE_BURST_JOBS={allowance or 'default'}, "
            f"load {os.getloadavg()[0]:.2f}): {jobs} jobs x {rows:,} rows from one service, then "
            f"a 10-row job from another: its rows stored in {waited:.2f} s, when the burst had "
            f"{stored:,} of {jobs * rows:,} rows stored; whole burst stored in {total:.1f} s"
        )


def _e2e_line(r: dict) -> str:
    per_k = r["messages"] / max(r["dispatched"] or 1, 1) * 1000
    return (
        f"end to end {r['kind']:5} {r['rows']:>9,} rows: {r['rows_per_s']:>9,.0f} rows/s "
        f"({r['seconds']:.2f} s wall, worker CPU {r['worker_cpu_s']:.2f} s), "
        f"worker RSS idle {r['idle_rss_mib']:.1f} MiB peak {r['peak_rss_mib']:.1f} MiB, "
        f"{r['messages']:,} messages ({per_k:.2f} per 1,000 rows), {r['status']}"
        + (f" (warm-up job {r['warmup_s']:.2f} s)" if r.get("warmup_s") is not None else ", cold")
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000", help="comma-separated sizes")
    parser.add_argument("--kinds", default="sms,email")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--skip-validation", action="store_true")
    parser.add_argument(
        "--cold", action="store_true", help="no warm-up job: time each worker's first job"
    )
    parser.add_argument(
        "--fairness", type=int, metavar="ROWS", help="only the fairness check, with a big job"
    )
    parser.add_argument(
        "--fairness-services",
        metavar="JOBSxROWS",
        help="only the fairness check between services, e.g. 50x4000",
    )
    parser.add_argument(
        "--burst-jobs",
        type=int,
        help="NOTIFY_SERVICE_BURST_JOBS for --fairness-services (1000000: fairness off)",
    )
    args = parser.parse_args(argv)
    if args.fairness_services:
        jobs, rows = (int(n) for n in args.fairness_services.lower().split("x"))
        fairness_services(jobs, rows, args.burst_jobs)
        return
    if args.fairness:
        with tempfile.TemporaryDirectory(prefix="csv-bench-files-") as tmp:
            path = Path(tmp) / "big.csv"
            write_file(path, "sms", args.fairness)
            fairness(path, args.fairness)
        return
    sizes = [int(s) for s in args.rows.split(",")]
    kinds = args.kinds.split(",")
    load = os.getloadavg()[0]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.2f}")

    with tempfile.TemporaryDirectory(prefix="csv-bench-files-") as tmp:
        files = []
        for kind in kinds:
            for rows in sizes:
                path = Path(tmp) / f"{kind}-{rows}.csv"
                write_file(path, kind, rows)
                files.append((kind, rows, path))
                size = path.stat().st_size / 2**20
                print(f"generated {kind} {rows:,} rows ({size:.1f} MiB)", flush=True)

        if not args.skip_validation:
            for kind, rows, path in files:
                v = validate(path, kind)
                print(
                    f"validation {kind:5} {rows:>9,} rows: {v['rows'] / v['wall']:>9,.0f} rows/s "
                    f"wall, {v['rows'] / v['cpu']:>9,.0f} rows/s CPU, {v['invalid']:,} invalid, "
                    f"peak RSS {v['peak_rss_kib'] / 1024:.1f} MiB",
                    flush=True,
                )

        if not args.skip_e2e:
            results = end_to_end(files, max(sizes), cold=args.cold)
            for kind in kinds:
                by_size = {r["rows"]: r for r in results if r["kind"] == kind}
                if len(by_size) >= 2:
                    small, big = by_size[min(by_size)], by_size[max(by_size)]
                    growth = big["peak_rss_mib"] - small["peak_rss_mib"]
                    print(
                        f"worker peak RSS growth {kind} {min(by_size):,} -> {max(by_size):,} "
                        f"rows: {growth:+.1f} MiB"
                    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(bench process peak RSS {peak:.0f} MiB)")


if __name__ == "__main__":
    main()
