"""Benchmark: transient letters moved through a real prefork worker, S3 over HTTP.

Starts a private redis-server, moto's S3 server in a subprocess (wrapped in a WSGI middleware
that counts requests by S3 operation), uploads N letter PDFs (default 2,000 of 30 KB) with the
web app's metadata, then starts ``notify-worker worker`` (prefork, ``--concurrency``) on the
``letters`` queue, enqueues one ``notify.letters.move_transient`` per letter and waits for
every result. It prints letters per second (first enqueue to last result) and S3 requests per
letter, counted on the server side, so every HTTP request the worker made is in the figure
(retries included; the set-up uploads and the final checks are not). A plain script:

    python bench/letters.py [--letters N] [--size BYTES] [--concurrency C] [--backup]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote
from urllib.request import urlopen

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

COUNTS_PATH = "/_bench/counts"
RESET_PATH = "/_bench/reset"


# --- the counting S3 server (runs in its own process: `letters.py --serve-s3 PORT`) ----------


def operation(environ: dict[str, Any]) -> str:
    """Name the S3 operation of a path-style request from its method, query and headers."""
    method = environ["REQUEST_METHOD"]
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    copy = "HTTP_X_AMZ_COPY_SOURCE" in environ
    path = environ.get("PATH_INFO", "/").strip("/")
    is_bucket = "/" not in path
    if method == "HEAD":
        return "HeadBucket" if is_bucket else "HeadObject"
    if method == "GET":
        if "tagging" in query:
            return "GetObjectTagging"
        if is_bucket:
            return "ListObjectsV2" if "list-type" in query else "GetBucket*"
        return "GetObject"
    if method == "PUT":
        if "uploadId" in query:
            return "UploadPartCopy" if copy else "UploadPart"
        if is_bucket:
            return "PutBucket*"
        return "CopyObject" if copy else "PutObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        return "DeleteObjects" if "delete" in query else "Post*"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    return method


class CountingApp:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path in (COUNTS_PATH, RESET_PATH):
            with self.lock:
                body = json.dumps(dict(self.counts)).encode()
                if path == RESET_PATH:
                    self.counts.clear()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        if not path.startswith("/moto-api"):
            with self.lock:
                self.counts[operation(environ)] += 1
        return self.app(environ, start_response)


def serve_s3(port: int) -> None:
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    app = CountingApp(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, True, request_handler=MotoRequestHandler)
    server.serve_forever()


# --- the benchmark -----------------------------------------------------------------------------


def _get_json(url: str) -> dict[str, int]:
    with urlopen(url, timeout=10) as response:  # noqa: S310 - our own loopback server
        return json.loads(response.read())


def _start_s3(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    from worker.local.servers import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve-s3", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _get_json(endpoint + COUNTS_PATH)
            return process, endpoint
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the counting S3 server did not start")


def _upload(client: Any, bucket: str, count: int, size: int) -> list[dict[str, Any]]:
    body = (b"%PDF-1.7\n" + os.urandom(size))[:size]
    service_id = str(uuid.uuid4())

    def put(index: int) -> dict[str, Any]:
        upload_id = str(uuid.uuid4())
        client.put_object(
            Bucket=bucket,
            Key=f"service-{service_id}/{upload_id}.pdf",
            Body=body[:-8] + index.to_bytes(8, "big"),  # distinct bytes, distinct ETags
            ServerSideEncryption="AES256",
            ContentType="application/pdf",
            Metadata={
                "status": "valid",
                "page_count": "2",
                "filename": quote(f"letter-{index}.pdf"),
                "recipient": quote("A Person\n1 Street\nSW1A 1AA"),
            },
        )
        return {
            "service_id": service_id,
            "upload_id": upload_id,
            "reference": f"BENCH{index:06d}",
            "postage": "second",
            "created_at": "2025-03-03T10:00:00Z",
        }

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(put, range(count)))


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="notify-bench-letters-"))
    env = dict(os.environ)
    env.update(
        {
            "NOTIFY_ENVIRONMENT": "bench",
            "AWS_ACCESS_KEY_ID": env.get("AWS_ACCESS_KEY_ID", "testing"),
            "AWS_SECRET_ACCESS_KEY": env.get("AWS_SECRET_ACCESS_KEY", "testing"),
            "AWS_REGION": "eu-west-1",
        }
    )
    for purpose in (
        "CSV_UPLOAD",
        "CONTACT_LIST_UPLOAD",
        "LOGO_UPLOAD",
        "MOU",
        "TRANSIENT_UPLOADED_LETTERS",
        "PRECOMPILED_ORIGINALS_BACKUP_LETTERS",
        "LETTER_ATTACHMENTS",
        "REPORT_REQUESTS_DOWNLOAD",
        "TEMPLATE_EMAIL_FILES",
        "LETTERS_PDF",
    ):
        env[f"S3_BUCKET_{purpose}"] = f"bench-{purpose.lower().replace('_', '-')}"
    s3_process, endpoint = _start_s3(env)
    env["S3_ENDPOINT_URL"] = endpoint

    from worker.local.servers import start_redis_server

    redis = start_redis_server()
    env["REDIS_URL"] = redis.url
    os.environ.clear()
    os.environ.update(env)
    worker = None
    try:
        from storage import admin
        from storage.client import get_client
        from storage.settings import reload_settings
        from worker.runtime.settings import reload_worker_settings

        reload_worker_settings()
        settings = reload_settings()
        admin.create_buckets()
        client = get_client()
        transient = settings.bucket("transient-letters")
        letters_pdf = settings.bucket("letters-pdf")

        started = time.perf_counter()
        jobs = _upload(client, transient, args.letters, args.size)
        upload_seconds = time.perf_counter() - started

        from worker.local.stack import start_worker_process
        from worker.runtime import queues

        worker = start_worker_process(
            env, workdir / "worker.log", concurrency=args.concurrency, queues=queues.LETTERS
        )
        from celery.result import ResultSet

        from worker.runtime.app import app

        _get_json(endpoint + RESET_PATH)
        started = time.perf_counter()
        results = [
            app.send_task(
                queues.LETTERS_MOVE_TRANSIENT,
                kwargs={**job, "backup": args.backup},
                queue=queues.LETTERS,
            )
            for job in jobs
        ]
        values = ResultSet(results).get(timeout=args.timeout, propagate=True)
        seconds = time.perf_counter() - started
        counts = _get_json(endpoint + COUNTS_PATH)

        statuses = Counter(v.get("status") for v in values)
        moved = sum(1 for _ in _keys(client, letters_pdf))
        left = sum(1 for _ in _keys(client, transient))
        total = sum(counts.values())
        return {
            "letters": args.letters,
            "size_bytes": args.size,
            "concurrency": args.concurrency,
            "backup": args.backup,
            "seconds": round(seconds, 2),
            "letters_per_second": round(args.letters / seconds, 1),
            "s3_requests": total,
            "s3_requests_per_letter": round(total / args.letters, 3),
            "by_operation": dict(sorted(counts.items())),
            "statuses": dict(statuses),
            "moved": moved,
            "left_in_transient": left,
            "upload_seconds": round(upload_seconds, 2),
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
    finally:
        if worker is not None:
            worker.stop()
        redis.stop()
        s3_process.terminate()
        s3_process.wait(10)


def _keys(client: Any, bucket: str):
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            yield item["Key"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=2000)
    parser.add_argument("--size", type=int, default=30_000, help="bytes per letter PDF")
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool processes")
    parser.add_argument("--backup", action="store_true", help="also back up every original")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    parser.add_argument("--serve-s3", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_s3:
        serve_s3(args.serve_s3)
        return

    figures = run(args)
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"{figures['letters']:,} letters of {figures['size_bytes']:,} bytes, worker concurrency "
        f"{figures['concurrency']}, backup {figures['backup']} "
        f"(load average {figures['load_average_1m']})"
    )
    left = figures["left_in_transient"]
    print(f"moved:                {figures['moved']:,} (left in transient: {left})")
    print(f"results:              {figures['statuses']}")
    print(f"time:                 {figures['seconds']} s")
    print(f"letters per second:   {figures['letters_per_second']}")
    per_letter, total = figures["s3_requests_per_letter"], figures["s3_requests"]
    print(f"S3 requests/letter:   {per_letter} ({total:,} in all)")
    for name, count in figures["by_operation"].items():
        print(f"  {name:<22}{count:>8,}")


if __name__ == "__main__":
    main()
