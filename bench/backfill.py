"""Benchmark: the backfill framework's own cost, and a real backfill at several concurrencies.

1. Framework overhead: N no-op items (default 20,000) through ``run_backfill`` (thread pool,
   checkpoint append per item, progress bar to /dev/null), then the same command again, which
   skips them all from the checkpoint. Items per second for both.
2. ``backfill letters`` in process: L letters (default 300, 30 KB) moved by the real core
   against moto's S3 server over HTTP (in a thread of this process, as the demo runs it), at
   concurrency 1, 4 and 8. Letters per second for each.

    python bench/backfill.py [--items N] [--letters L]

Prints one JSON object. The moto server shares this process's CPU, so the letter figures are a
floor: against real S3 the handlers wait on the network and concurrency helps more.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.update(
    {
        "NOTIFY_ENVIRONMENT": "test",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "eu-west-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
)

from rich.console import Console

from worker.backfill.framework import run_backfill


def quiet() -> Console:
    return Console(file=io.StringIO())


def framework(items: int, state: Path) -> dict[str, float]:
    def noop(kwargs: dict) -> dict:
        return {"status": "ok"}

    source = [(f"item-{n}", {"n": n}) for n in range(items)]
    figures = {}
    for label in ("first_run", "rerun_all_skipped"):
        started = time.perf_counter()
        summary = run_backfill(
            source,
            name="bench",
            args={},
            handler=noop,
            state_dir=state,
            concurrency=4,
            total=items,
            console=quiet(),
        )
        elapsed = time.perf_counter() - started
        assert summary.done + summary.already_done == items
        figures[f"{label}_items_per_s"] = round(items / elapsed)
    return figures


def letters(count: int, state: Path) -> dict[str, float]:
    from storage import admin
    from storage.buckets import SSE
    from storage.client import get_client
    from storage.keys import transient_letter_key
    from storage.settings import get_settings, reload_settings
    from tasks.letters.backfill import run_letter_job
    from worker.local.servers import embedded_s3

    figures = {}
    with embedded_s3() as endpoint:
        os.environ["S3_ENDPOINT_URL"] = endpoint
        reload_settings()
        admin.create_buckets()
        client = get_client()
        bucket = get_settings().bucket("transient-letters")
        body = b"%PDF-1.7\n" + b"x" * 30_000
        for concurrency in (1, 4, 8):
            jobs = []
            for n in range(count):
                service_id, upload_id = str(uuid.uuid4()), str(uuid.uuid4())
                jobs.append(
                    (
                        upload_id,
                        {
                            "service_id": service_id,
                            "upload_id": upload_id,
                            "reference": f"B{concurrency}X{n}",
                            "postage": "second",
                            "created_at": "2024-07-15T10:00:00Z",
                        },
                    )
                )

            def put(job: tuple[str, dict]) -> None:
                kwargs = job[1]
                client.put_object(
                    Bucket=bucket,
                    Key=transient_letter_key(kwargs["service_id"], kwargs["upload_id"]),
                    Body=body,
                    Metadata={"status": "valid", "page_count": "1", "filename": quote("a.pdf")},
                    ServerSideEncryption=SSE,
                )

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(put, jobs))
            started = time.perf_counter()
            summary = run_backfill(
                jobs,
                name="bench-letters",
                args={"concurrency": concurrency},
                handler=run_letter_job,
                state_dir=state,
                concurrency=concurrency,
                total=count,
                console=quiet(),
            )
            elapsed = time.perf_counter() - started
            assert summary.statuses.get("ok") == count, summary.as_dict()
            figures[f"concurrency_{concurrency}_letters_per_s"] = round(count / elapsed, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--letters", type=int, default=300)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        result = {
            "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
            "framework": framework(options.items, Path(state) / "f"),
            "letters_in_process": letters(options.letters, Path(state) / "l"),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
