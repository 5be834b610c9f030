"""Benchmark of the PostgreSQL notification store. A plain script, not a test:

    python bench/postgres_sink.py [--rows 100000,1000000] [--kinds sms,email] [--sample 5000]
        [--topology split|one] [--concurrency 2] [--prefetch 4] [--skip-bulk] [--skip-e2e]

Needs a PostgreSQL server: ``NOTIFY_BENCH_DATABASE_URL`` (default
postgresql://postgres@127.0.0.1:5432/postgres); a database of its own is created, upgraded and
dropped at the end. Files are made by bench/csv_batches.py (about 2% bad rows).

* **end to end** — a private redis-server, an embedded moto S3 over HTTP and fresh prefork
  workers (``notify-worker worker``) with ``NOTIFY_DATABASE_URL`` set: the time from enqueueing
  ``notify.csv.process_batch`` to the commit of the job's last row (the job's ``stored``
  progress reaching its valid rows; then the table's ``count(*)`` is checked to equal them).
  The workers (``--topology``): ``split`` (default), the deployment docs/operations.md
  recommends, one worker for the CSV queues (one process) and one for the sink's queues
  (``--concurrency`` processes, ``--prefetch-multiplier`` ``--prefetch``); or ``one``, a single
  worker on every queue (``--concurrency`` processes). Each run first stores a 1,000-row job of
  the same kind, as in the CSV bench. Printed: CPU of the workers' pool children and main
  processes and of the PostgreSQL backends, the sink tasks' run times (from the workers'
  logs), rows stored when the dispatch ended. Memory: peak RSS (VmHWM) of the pool children,
  and of the PostgreSQL backends serving them (their private memory, RssAnon: shared buffers
  are the server's, not the connection's).
* **per row**, in the same run: the same kind of rows stored one INSERT and one commit per row
  (how a one-task-per-row design stores them) on a sample, from this process; and the store's
  own bulk call on the same sample (1,000-row batches) for comparison.

Targets (2-core machine): end to end >= 40,000 rows/s committed, >= 20x the per-row way; worker
and database memory flat from 100k to 1M rows. The machine may be shared: the load average is
printed with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from csv_batches import (  # the CSV bench's files, ids and warm-up job
    SERVICE_ID,
    TEMPLATE_ID,
    WARMUP_ROWS,
    _child_stats,
    _run_job,
    _warmup_csv,
    write_file,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def load() -> str:
    return "load {:.2f}/{:.2f}/{:.2f}".format(*os.getloadavg())


def _proc_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, PermissionError):
        pass
    return 0


def backend_memory(url: str) -> tuple[int, int]:
    """(count, max RssAnon KiB) of the PostgreSQL backends serving the workers."""
    import psycopg

    with psycopg.connect(url) as conn:
        pids = [
            pid
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'notify-worker'"
            )
        ]
    return len(pids), max((_proc_kib(pid, "RssAnon") for pid in pids), default=0)


def backend_cpu(url: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving the workers, by pid."""
    import psutil
    import psycopg

    with psycopg.connect(url) as conn:
        pids = [
            pid
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'notify-worker'"
            )
        ]
    seconds = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            seconds[pid] = times.user + times.system
        except psutil.Error:
            continue
    return seconds


def table_count(url: str, upload_id: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*), count(DISTINCT id) FROM notifications WHERE job_id = %s",
            (upload_id,),
        ).fetchone()


def sample_batches(kind: str, rows: int) -> tuple[str, list[dict]]:
    upload_id = str(uuid.uuid4())
    batches = []
    for start in range(1, rows + 1, 1000):
        batch_rows = []
        for n in range(start, min(start + 1000, rows + 1)):
            recipient = f"4477009{n % 100000:05d}" if kind == "sms" else f"person.{n}@example.com"
            batch_rows.append(
                {
                    "notification_id": str(uuid.uuid5(uuid.UUID(upload_id), str(n))),
                    "row_number": n,
                    "recipient": recipient,
                    "personalisation": {
                        "phone number" if kind == "sms" else "email address": recipient,
                        "name": f"Person {n}",
                        "ref": f"REF-{n:07d}",
                    },
                }
            )
        batches.append(
            {
                "service_id": SERVICE_ID,
                "upload_id": upload_id,
                "template_id": TEMPLATE_ID,
                "template_type": kind,
                "sender_id": None,
                "rows": batch_rows,
            }
        )
    return upload_id, batches


PER_ROW = """
INSERT INTO notifications (id, job_id, job_row_number, service_id, template_id,
    notification_type, "to", personalisation, status, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, 'created', now())
ON CONFLICT (id) DO NOTHING
"""


def per_row(url: str, kind: str, rows: int) -> dict:
    """One INSERT and one commit per row, on one connection (the best case of that design: no
    task overhead counted)."""
    import psycopg

    _, batches = sample_batches(kind, rows)
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        for batch in batches:
            for row in batch["rows"]:
                conn.execute(
                    PER_ROW,
                    (
                        row["notification_id"],
                        batch["upload_id"],
                        row["row_number"],
                        batch["service_id"],
                        batch["template_id"],
                        kind,
                        row["recipient"],
                        json.dumps(row["personalisation"]),
                    ),
                    prepare=True,
                )
                conn.commit()
        seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}


def bulk_store(kind: str, rows: int) -> dict:
    """The store's own call (one statement per 1,000-row batch), from this process."""
    from tasks.csv_batches import sink

    _, batches = sample_batches(kind, rows)
    started = time.perf_counter()
    stored = sum(sink.save_batch(b)["stored"] for b in batches)
    seconds = time.perf_counter() - started
    assert stored == rows, stored
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}


COPY_TEMP = """
CREATE TEMP TABLE IF NOT EXISTS notify_batch
    (id uuid, job_row_number integer, "to" text, personalisation jsonb) ON COMMIT DELETE ROWS
"""
COPY_INSERT = """
INSERT INTO notifications (id, job_id, job_row_number, service_id, template_id,
    notification_type, "to", personalisation, status, created_at)
SELECT id, %s::uuid, job_row_number, %s::uuid, %s::uuid, %s, "to", personalisation, 'created',
    now()
FROM notify_batch
ON CONFLICT (id) DO NOTHING
"""


def copy_store(url: str, kind: str, rows: int) -> dict:
    """The alternative considered: COPY each batch into a temporary table, then one INSERT ...
    SELECT ... ON CONFLICT, one transaction per batch."""
    import psycopg

    _, batches = sample_batches(kind, rows)
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        for batch in batches:
            conn.execute(COPY_TEMP)
            with conn.cursor().copy("COPY notify_batch FROM STDIN") as copy:
                for row in batch["rows"]:
                    copy.write_row(
                        (
                            row["notification_id"],
                            row["row_number"],
                            row["recipient"],
                            json.dumps(row["personalisation"]),
                        )
                    )
            conn.execute(
                COPY_INSERT,
                (batch["upload_id"], batch["service_id"], batch["template_id"], kind),
            )
            conn.commit()
        seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}


def statement_store(url: str, kind: str, rows: int) -> dict:
    """The store's statement alone (no batch checks, pool or Redis), one transaction per batch:
    the like-for-like comparison with ``copy_store``."""
    import psycopg

    from tasks.csv_batches.store.postgres import INSERT

    _, batches = sample_batches(kind, rows)
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        for batch in batches:
            conn.execute(
                INSERT,
                {
                    "job_id": batch["upload_id"],
                    "service_id": batch["service_id"],
                    "template_id": batch["template_id"],
                    "notification_type": kind,
                    "rows": json.dumps(batch["rows"], ensure_ascii=False, separators=(",", ":")),
                },
                prepare=True,
            )
            conn.commit()
        seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}


def worker_plan(topology: str, concurrency: int, prefetch: int) -> list[dict]:
    """The workers of a run. ``one``: one worker on every queue (the job and the sink share its
    pool). ``split``: the recommended deployment, a worker for the CSV queues (one process: the
    job) and a worker of its own for the sink's queues."""
    from worker.runtime import queues

    extra = [f"--prefetch-multiplier={prefetch}"]
    if topology == "one":
        return [{"concurrency": concurrency, "extra_args": extra}]
    sink = [queues.DATABASE_TASKS, queues.bulk_queue(queues.DATABASE_TASKS)]
    others = [q for q in queues.all_queues() if q not in sink]
    return [
        {"concurrency": 1, "queues": ",".join(others)},
        {"concurrency": concurrency, "queues": ",".join(sink), "extra_args": extra},
    ]


def end_to_end(
    files: list[tuple[str, int, Path]], url: str, max_rows: int, plan: list[dict]
) -> list[dict]:
    import redis

    from storage import admin
    from storage.client import get_client
    from storage.keys import csv_upload_key
    from storage.settings import get_settings
    from tasks.csv_batches.state import read_progress
    from worker.client import NotifyClient
    from worker.local.stack import local_stack

    os.environ["NOTIFY_CSV_MAX_ROWS"] = str(max_rows)
    os.environ["REDIS_URL"] = "redis://127.0.0.1:1/0"  # a private Redis: never someone else's
    os.environ["NOTIFY_DATABASE_URL"] = url
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="pg-bench-") as workdir,
        local_stack(Path(workdir), embedded=True) as stack,
    ):
        admin.create_buckets()
        client = get_client()
        bucket = get_settings().bucket("csv-upload")
        redis.Redis.from_url(stack.redis_url).ping()
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
            workers = [stack.start_worker(**options) for options in plan]
            try:
                time.sleep(1.0)
                small = str(uuid.uuid4())
                client.put_object(
                    Bucket=bucket,
                    Key=csv_upload_key(SERVICE_ID, small),
                    Body=_warmup_csv(kind),
                    ServerSideEncryption="AES256",
                )
                warm = _run_job(NotifyClient(), small, kind, WARMUP_ROWS)
                while (read_progress(small) or {}).get("stored", 0) < warm["rows_dispatched"]:
                    time.sleep(0.05)
                before = load()
                cpu_before = sum(_child_stats(w)[1] for w in workers)
                main_cpu_before = sum(_main_cpu(w) for w in workers)
                log_offsets = [w.log_path.stat().st_size for w in workers]
                db_cpu_before = backend_cpu(url)
                started = time.perf_counter()
                result = _run_job(NotifyClient(), upload_id, kind, rows)
                dispatched_s = time.perf_counter() - started
                stored_at_dispatch = (read_progress(upload_id) or {}).get("stored", 0)
                valid = result["rows_dispatched"]
                backends = (0, 0)
                while (read_progress(upload_id) or {}).get("stored", 0) < valid:
                    backends = max(backends, backend_memory(url))
                    time.sleep(0.05)
                seconds = time.perf_counter() - started
                stats = [_child_stats(w) for w in workers]
                peak_rss = max(peak for peak, _ in stats)
                cpu = sum(spent for _, spent in stats) - cpu_before
                main_cpu = sum(_main_cpu(w) for w in workers) - main_cpu_before
                db_cpu = sum(
                    spent - db_cpu_before.get(pid, 0.0) for pid, spent in backend_cpu(url).items()
                )
                backends = max(backends, backend_memory(url))
            finally:
                for w in workers:
                    w.stop()
            counted = table_count(url, upload_id)
            sink = _sink_runtimes(
                [(w.log_path, at) for w, at in zip(workers, log_offsets, strict=True)]
            )
            results.append(
                {
                    "kind": kind,
                    "rows": rows,
                    "valid": valid,
                    "in_table": counted,
                    "seconds": seconds,
                    "dispatched_s": dispatched_s,
                    "rows_per_s": rows / seconds,
                    "valid_per_s": valid / seconds,
                    "worker_peak_rss_mib": peak_rss / 1024,
                    "worker_cpu_s": cpu,
                    "worker_main_cpu_s": main_cpu,
                    "stored_at_dispatch": stored_at_dispatch,
                    "sink_tasks": sink,
                    "db_cpu_s": db_cpu,
                    "backends": backends[0],
                    "backend_rss_anon_mib": backends[1] / 1024,
                    "load_before": before,
                    "load_after": load(),
                }
            )
            r = results[-1]
            print(
                f"end to end {kind:5} {rows:>9,} rows: {r['rows_per_s']:>8,.0f} rows/s "
                f"({r['valid_per_s']:,.0f} valid rows/s committed; {seconds:.2f} s, "
                f"dispatch done at {dispatched_s:.2f} s with {stored_at_dispatch:,} stored), "
                f"table {counted[0]:,} rows "
                f"{counted[1]:,} distinct of {valid:,} valid; worker children peak RSS "
                f"{r['worker_peak_rss_mib']:.1f} MiB, CPU {cpu:.1f} s (main process "
                f"{main_cpu:.1f} s); sink tasks {sink}; {backends[0]} backends, "
                f"peak private RSS {r['backend_rss_anon_mib']:.1f} MiB, CPU {db_cpu:.1f} s; "
                f"CPU per valid row: worker {cpu / valid * 1e6:.1f} us + database "
                f"{db_cpu / valid * 1e6:.1f} us; {before} -> {r['load_after']}",
                flush=True,
            )
            assert counted == (valid, valid), counted
    return results


def _main_cpu(worker) -> float:
    """CPU seconds of the worker's main process (it takes messages from the broker)."""
    import psutil

    times = psutil.Process(worker.pid).cpu_times()
    return times.user + times.system


def _sink_runtimes(logs: list[tuple[Path, int]]) -> str:
    """How long the sink tasks of the timed job ran, from the workers' logs ("succeeded in"),
    each read from the offset it had when the job started."""
    seconds = []
    for log_path, offset in logs:
        with open(log_path, "rb") as log:
            log.seek(offset)
            for line in log:
                if b"save_batch[" in line and b"succeeded in " in line:
                    seconds.append(float(line.split(b"succeeded in ")[1].split(b"s:")[0]))
    if not seconds:
        return "none logged"
    seconds.sort()
    mean = sum(seconds) / len(seconds)
    p95 = seconds[int(0.95 * (len(seconds) - 1))]
    return (
        f"{len(seconds)} ran {sum(seconds):.1f} s in all, mean {mean * 1e3:.1f} ms, "
        f"p95 {p95 * 1e3:.1f} ms"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000", help="comma-separated sizes")
    parser.add_argument("--kinds", default="sms,email")
    parser.add_argument("--sample", type=int, default=5000, help="rows for the per-row way")
    parser.add_argument(
        "--bulk-sample", type=int, default=50_000, help="rows for the two bulk ways, in process"
    )
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument(
        "--topology",
        choices=("one", "split"),
        default="split",
        help="one worker on every queue, or a CSV worker and a sink worker (default)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=2, help="pool size of the worker that runs the sink"
    )
    parser.add_argument(
        "--prefetch", type=int, default=4, help="prefetch multiplier of the sink's worker"
    )
    parser.add_argument("--skip-bulk", action="store_true", help="no in-process comparison")
    args = parser.parse_args(argv)
    import psycopg

    from tasks.csv_batches.store.schema import upgrade
    from worker.runtime.database import get_database_settings, reset_pool

    server = os.environ.get("NOTIFY_BENCH_DATABASE_URL") or DEFAULT_SERVER
    name = f"notify_bench_{uuid.uuid4().hex[:10]}"
    url = server.rsplit("/", 1)[0] + "/" + name
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {load()}")
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        print(admin.execute("SELECT version()").fetchone()[0].split(" on ")[0])
    try:
        os.environ["NOTIFY_DATABASE_URL"] = url
        upgrade(get_database_settings())
        sizes = [int(s) for s in args.rows.split(",")]
        kinds = args.kinds.split(",")
        figures: dict[str, dict] = {}
        for kind in kinds:
            slow = per_row(url, kind, args.sample)
            figures[kind] = slow
            print(
                f"per row   {kind:5} {args.sample:>9,} rows: {slow['rows_per_s']:>8,.0f} rows/s "
                f"(one INSERT + commit each); {load()}",
                flush=True,
            )
            for _ in range(0 if args.skip_bulk else 2):  # alternate, twice: the load moves
                fast = bulk_store(kind, args.bulk_sample)
                statement = statement_store(url, kind, args.bulk_sample)
                copied = copy_store(url, kind, args.bulk_sample)
                print(
                    f"bulk      {kind:5} {args.bulk_sample:>9,} rows, this process: the store's "
                    f"call {fast['rows_per_s']:,.0f} rows/s; its statement alone "
                    f"(jsonb_to_recordset) {statement['rows_per_s']:,.0f} rows/s; COPY + INSERT "
                    f"{copied['rows_per_s']:,.0f} rows/s; {load()}",
                    flush=True,
                )
        reset_pool()
        if args.skip_e2e:
            return
        with tempfile.TemporaryDirectory(prefix="pg-bench-files-") as tmp:
            files = []
            for kind in kinds:
                for rows in sizes:
                    path = Path(tmp) / f"{kind}-{rows}.csv"
                    write_file(path, kind, rows)
                    files.append((kind, rows, path))
            plan = worker_plan(args.topology, args.concurrency, args.prefetch)
            print(f"workers: {plan}")
            results = end_to_end(files, url, max(sizes), plan)
        for r in results:
            ratio = r["valid_per_s"] / figures[r["kind"]]["rows_per_s"]
            print(
                f"{r['kind']:5} {r['rows']:>9,}: {r['valid_per_s']:,.0f} valid rows/s committed "
                f"end to end = {ratio:.0f}x the per-row way"
            )
    finally:
        reset_pool()
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
