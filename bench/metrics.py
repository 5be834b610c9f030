"""Cost of the metrics hooks, measured directly (a plain script, not a test):

    python bench/metrics.py [--iterations 20000]

End-to-end runs on a shared machine vary by more than the hooks cost, so this times the hooks
themselves, in prometheus-client's multiprocess mode as a worker runs them (values in
memory-mapped files): the task hooks (task_prerun + task_postrun with a CSV job's result) and
the S3 handlers (before-call + after-call of one GetObject). Compare with what a CSV job costs
per row (``bench/csv_batches.py`` prints the worker's CPU seconds).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20000)
    n = parser.parse_args().iterations

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="notify-bench-metrics-")
    from worker.runtime import metrics, queues

    metrics.prepare_multiprocess_dir()
    metrics._m = metrics._worker_metrics()

    task = SimpleNamespace(
        name=queues.CSV_PROCESS_BATCH,
        request=SimpleNamespace(delivery_info={"routing_key": "csv-batches"}, notify_sent_at=None),
    )
    result = {"status": "ok", "job_status": "finished", "rows_dispatched": 980, "rows_invalid": 20}
    started = time.process_time()
    for i in range(n):
        metrics._task_prerun(task_id=str(i), task=task)
        metrics._task_postrun(task_id=str(i), task=task, retval=result, state="SUCCESS")
    task_us = (time.process_time() - started) / n * 1e6

    model = SimpleNamespace(name="GetObject")
    response = SimpleNamespace(status_code=200)
    parsed = {"ContentLength": 1024}
    started = time.process_time()
    for _ in range(n):
        context: dict = {}
        metrics._s3_before(params={"body": b""}, model=model, context=context)
        metrics._s3_after(http_response=response, parsed=parsed, model=model, context=context)
    s3_us = (time.process_time() - started) / n * 1e6

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"task hooks (prerun + postrun, CSV result): {task_us:.1f} us CPU per task")
    print(f"S3 handlers (before + after one call):     {s3_us:.1f} us CPU per call")


if __name__ == "__main__":
    main()
