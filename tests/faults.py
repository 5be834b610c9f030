"""A fault-injecting HTTP proxy in front of the moto server, and its pytest fixtures.

``FaultProxy`` is a ``ThreadingHTTPServer`` on 127.0.0.1 that forwards every request to the
moto endpoint with ``http.client``, streaming bodies both ways, and answers a configurable
fraction of requests (default 10%) with one of these faults:

* ``slowdown``    — ``503 SlowDown`` with S3's XML error body (botocore: throttling, retried);
* ``internal``    — ``500 InternalError`` (botocore: transient 5xx, retried);
* ``drop_before`` — the connection is closed before the request reaches moto (nothing happened);
* ``drop_after``  — the request IS forwarded and done by moto, then the connection is closed
  before the response: the client retries an operation that already happened, which exposes
  non-idempotent steps (CompleteMultipartUpload, conditional PUT/DELETE, …);
* ``hold(...)``   — (targeted) the request waits in the proxy until released, so a crash test
  can SIGKILL a worker stuck at an exact point, then drop or forward the request;
* strict conditionals — (on by default) the conditions moto ignores are answered as real S3
  answers them: ``412`` for ``If-None-Match: *`` on CompleteMultipartUpload (moto answers a
  retried completion ``200``) and on CopyObject, and for a failed
  ``x-amz-copy-source-if-match``, so no test passes only because moto is lenient; and
  ListMultipartUploads gives each upload's real start time (moto says 2010-11-10 for all,
  which makes every live upload look abandoned); ``age_upload()`` moves one into the past;
* ``truncate``    — (not in the default mix) the response headers and half the body are sent,
  then the connection is closed: a streaming read fails mid-way.

The RNG is seeded, so a run is reproducible for a given request order. Counters are kept per
S3 operation (requests, and faults by kind), and every write is checked for
``x-amz-server-side-encryption: AES256`` (``unencrypted_writes``). ``force(operation, kind)``
queues deterministic faults for targeted tests.

In-process code uses it by pointing ``S3_ENDPOINT_URL`` at ``proxy.url`` and calling
``storage.settings.reload_settings()`` (the ``s3_faults`` fixture does both); prefork workers get
``S3_ENDPOINT_URL=proxy.url`` in their environment (``reliability_fixtures.start_worker``).
The proxy runs in the test process, so its counters include what the workers did.

The fixtures ``fault_proxy`` and ``s3_faults`` are registered for every test in tests/conftest.py
(``pytest_plugins``).
"""

from __future__ import annotations

import http.client
import random
import re
import socket
import threading
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

FAULT_KINDS = ("slowdown", "internal", "drop_before", "drop_after", "truncate")
DEFAULT_KINDS = ("slowdown", "internal", "drop_before", "drop_after")
DEFAULT_RATE = 0.10
STREAM_CHUNK = 64 * 1024

# Hop-by-hop headers (RFC 9110, section 7.6.1) and ones the proxy re-creates itself.
_HOP_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "content-length",
}
_ERRORS = {
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "internal": (500, "InternalError", "We encountered an internal error. Please try again."),
    "precondition": (
        412,
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
    ),
}
_WRITE_OPERATIONS = {"PutObject", "CopyObject", "CreateMultipartUpload"}
_UPLOAD_TIMES = ("CreateMultipartUpload", "ListMultipartUploads")
_UPLOAD_ID = re.compile(rb"<UploadId>([^<]+)</UploadId>")
_INITIATED = re.compile(rb"(<UploadId>([^<]+)</UploadId>.*?<Initiated>)([^<]*)(</Initiated>)", re.S)


def operation_name(method: str, path: str, query: str, headers: Mapping[str, str]) -> str:
    """The S3 operation of a path-style request (what botocore would call it)."""
    q = parse_qs(query, keep_blank_values=True)
    parts = [p for p in path.split("/") if p]
    if not parts:
        return "ListBuckets"
    on_object = len(parts) > 1
    method = method.upper()
    if "uploads" in q:
        return "CreateMultipartUpload" if method == "POST" else "ListMultipartUploads"
    if "uploadId" in q:
        if method == "PUT":
            return "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
        return {
            "POST": "CompleteMultipartUpload",
            "DELETE": "AbortMultipartUpload",
            "GET": "ListParts",
        }.get(method, f"{method}Upload")
    if "delete" in q and method == "POST":
        return "DeleteObjects"
    for sub, name in (
        ("tagging", "Tagging"),
        ("encryption", "Encryption"),
        ("lifecycle", "LifecycleConfiguration"),
        ("location", "Location"),
        ("versioning", "Versioning"),
        ("policy", "Policy"),
    ):
        if sub in q:
            verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method, method)
            return f"{verb}{'Object' if on_object else 'Bucket'}{name}"
    if on_object:
        if method == "PUT":
            return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
        return {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(
            method, f"{method}Object"
        )
    if method == "GET":
        return "ListObjectsV2" if q.get("list-type") == ["2"] else "ListObjects"
    return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(
        method, f"{method}Bucket"
    )


@dataclass
class OperationStats:
    requests: int = 0
    faults: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "faults": dict(self.faults)}


class Hold:
    """A request held in the proxy: the client is stuck waiting for its answer.

    Lets a crash test SIGKILL a worker at an exact point (say, between a letter's copy and its
    delete): ``wait()`` until the worker is stuck in the held request, kill it, then
    ``release()`` — dropping the request (it never happened) or forwarding it (it happened, but
    nobody heard).
    """

    def __init__(self, operation: str, path_contains: str, skip: int) -> None:
        self.operation = operation
        self.path_contains = path_contains
        self.skip = skip  # let this many matching requests through first
        self.reached = threading.Event()
        self._released = threading.Event()
        self.forward = False
        self.path = ""

    def matches(self, operation: str, path: str) -> bool:
        if self.reached.is_set() or operation != self.operation or self.path_contains not in path:
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        return True

    def wait(self, timeout: float = 60) -> None:
        if not self.reached.wait(timeout):
            raise AssertionError(f"no {self.operation} request reached the proxy in {timeout}s")

    def release(self, *, forward: bool = False) -> None:
        self.forward = forward
        self._released.set()


class FaultProxy:
    """The proxy server. Start with ``start()`` (or use as a context manager)."""

    def __init__(
        self,
        upstream: str,
        *,
        rate: float = DEFAULT_RATE,
        kinds: tuple[str, ...] = DEFAULT_KINDS,
        seed: int = 1234,
        operations: set[str] | None = None,
        strict: bool = True,
    ) -> None:
        target = urlsplit(upstream)
        if target.scheme != "http" or not target.hostname:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        self.upstream_host = target.hostname
        self.upstream_port = target.port or 80
        self.rate = rate
        self.kinds = tuple(kinds)
        self.operations = operations  # None: every operation may fault
        # Answer the conditions moto ignores as real S3 does, so no test passes on leniency.
        self.strict = strict
        self.strict_refusals: Counter = Counter()
        self._upstream_client: Any = None
        self._initiated: dict[str, datetime] = {}  # upload id -> when it was created
        self.enabled = True
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stats: dict[str, OperationStats] = defaultdict(OperationStats)
        self._forced: dict[str, deque[str]] = defaultdict(deque)
        self._holds: list[Hold] = []
        self.unencrypted_writes: list[str] = []
        # (bucket, operation) pairs seen, with the source bucket of copies as "CopySource":
        # what the IAM policy must allow, and no more.
        self.bucket_operations: Counter = Counter()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- control -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "proxy not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def upstream_url(self) -> str:
        return f"http://{self.upstream_host}:{self.upstream_port}"

    def start(self) -> FaultProxy:
        handler = type("BoundHandler", (_ProxyHandler,), {"proxy": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fault-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def force(self, operation: str, kind: str, times: int = 1, *, skip: int = 0) -> None:
        """After ``skip`` requests of ``operation`` go through untouched, the next ``times`` get
        ``kind`` (even when random faults are off)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._forced[operation].extend([""] * skip + [kind] * times)

    def hold(self, operation: str, path_contains: str = "", *, skip: int = 0) -> Hold:
        """Hold the next matching request (after ``skip`` matches) until released."""
        held = Hold(operation, path_contains, skip)
        with self._lock:
            self._holds.append(held)
        return held

    def release_all(self) -> None:
        with self._lock:
            holds, self._holds = self._holds, []
        for held in holds:
            held.release()

    def _take_hold(self, operation: str, path: str) -> Hold | None:
        with self._lock:
            for held in self._holds:
                if held.matches(operation, path):
                    held.path = path
                    return held
        return None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No random faults inside the block (setting up and checking a test)."""
        before, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = before

    def reset_counters(self) -> None:
        with self._lock:
            self._stats.clear()
            self.unencrypted_writes.clear()
            self.bucket_operations.clear()
            self.strict_refusals.clear()

    # --- counters ----------------------------------------------------------------------------

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per operation: ``{"requests": n, "faults": {kind: n}}``."""
        with self._lock:
            return {op: s.as_dict() for op, s in sorted(self._stats.items())}

    @property
    def requests(self) -> int:
        with self._lock:
            return sum(s.requests for s in self._stats.values())

    @property
    def faults(self) -> int:
        with self._lock:
            return sum(sum(s.faults.values()) for s in self._stats.values())

    def faults_by_kind(self) -> dict[str, int]:
        total: Counter = Counter()
        with self._lock:
            for s in self._stats.values():
                total.update(s.faults)
        return dict(total)

    def summary(self) -> str:
        """One line for logs and docs."""
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.faults_by_kind().items()))
        return f"{self.requests} requests, {self.faults} faults ({kinds or 'none'})"

    # --- used by the handler -----------------------------------------------------------------

    def _head_etag(self, bucket: str, key: str) -> str | None:
        from botocore.exceptions import ClientError

        with self._lock:
            if self._upstream_client is None:
                import boto3
                from botocore.config import Config

                self._upstream_client = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.upstream_url,
                    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0}),
                )
        try:
            return self._upstream_client.head_object(Bucket=bucket, Key=key)["ETag"]
        except ClientError:
            return None

    def age_upload(self, upload_id: str, initiated: datetime) -> None:
        """Make ListMultipartUploads say this upload started at ``initiated``."""
        with self._lock:
            self._initiated[upload_id] = initiated

    def _upload_times(self, operation: str, body: bytes) -> bytes:
        """moto reports every upload as initiated on 2010-11-10; S3 reports the real time.
        Record when each upload was created and put that time in the listings."""
        with self._lock:
            if operation == "CreateMultipartUpload":
                found = _UPLOAD_ID.search(body)
                if found:
                    self._initiated[found.group(1).decode()] = datetime.now(UTC)
                return body

            def real_time(match: re.Match) -> bytes:
                when = self._initiated.get(match.group(2).decode())
                if when is None:
                    return match.group(0)
                stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z").encode()
                return match.group(1) + stamp + match.group(4)

            return _INITIATED.sub(real_time, body)

    def _count_strict(self, operation: str) -> None:
        with self._lock:
            self.strict_refusals[operation] += 1

    def _decide(self, operation: str, path: str, headers: Mapping[str, str]) -> str | None:
        with self._lock:
            stats = self._stats[operation]
            stats.requests += 1
            bucket = path.strip("/").split("/", 1)[0]
            self.bucket_operations[(bucket, operation)] += 1
            source = headers.get("x-amz-copy-source")
            if source:
                source_bucket = unquote(source).lstrip("/").split("/", 1)[0]
                self.bucket_operations[(source_bucket, "CopySource")] += 1
            if operation in _WRITE_OPERATIONS:
                sse = headers.get("x-amz-server-side-encryption")
                if sse != "AES256":
                    self.unencrypted_writes.append(f"{operation} {path}")
            kind: str | None = None
            if self._forced.get(operation):
                kind = self._forced[operation].popleft() or None  # "": a skipped request
            elif (
                self.enabled
                and (self.operations is None or operation in self.operations)
                and self._rng.random() < self.rate
            ):
                kind = self._rng.choice(self.kinds)
            if kind:
                stats.faults[kind] += 1
            return kind


class _ProxyHandler(BaseHTTPRequestHandler):
    proxy: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request otherwise

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    # --- one request -------------------------------------------------------------------------

    def _handle(self) -> None:
        split = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        if split.path.startswith("/moto-api"):
            self._forward(None)  # the rig's own control calls are never faulted
            return
        operation = operation_name(self.command, split.path, split.query, headers)
        held = self.proxy._take_hold(operation, split.path)
        if held is not None:
            # Read the body first: once the client is killed, unread data may be lost.
            body = b"".join(self._request_body())
            held.reached.set()
            held._released.wait(300)
            if held.forward:
                self._forward(None, body=body, operation=operation)
            else:
                self._drop()
            return
        kind = self.proxy._decide(operation, split.path, headers)
        if kind in ("slowdown", "internal"):
            self._drain_request_body()
            self._send_error(kind)
        elif kind == "drop_before":
            self._drain_request_body()
            self._drop()
        elif self.proxy.strict and self._condition_fails(operation, split.path, headers):
            self._drain_request_body()
            self.proxy._count_strict(operation)
            if kind == "drop_after":
                self._drop()
            else:
                self._send_error("precondition")
        else:
            self._forward(kind, operation=operation)

    def _condition_fails(self, operation: str, path: str, headers: Mapping[str, str]) -> bool:
        """Real S3's answer to the conditions moto ignores (docs/storage.md): If-None-Match on
        CompleteMultipartUpload after the key exists (moto answers a retried completion 200)
        and on CopyObject, and x-amz-copy-source-if-match on CopyObject."""
        conditional = operation in ("CompleteMultipartUpload", "CopyObject")
        if conditional and headers.get("if-none-match") == "*" and self._upstream_etag(path):
            return True
        if operation == "CopyObject" and headers.get("x-amz-copy-source-if-match"):
            etag = self._upstream_etag(headers["x-amz-copy-source"].split("?")[0])
            return etag is None or etag != headers["x-amz-copy-source-if-match"]
        return False

    def _upstream_etag(self, path: str) -> str | None:
        """HEAD ``/bucket/key`` on moto directly (signed; not counted, never faulted)."""
        bucket, _, key = path.lstrip("/").partition("/")
        return self.proxy._head_etag(bucket, unquote(key))

    def _request_body(self) -> Iterator[bytes]:
        """The request body as it arrives (Content-Length or chunked)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                remaining = size
                while remaining:
                    chunk = self.rfile.read(min(remaining, STREAM_CHUNK))
                    if not chunk:
                        return
                    remaining -= len(chunk)
                    yield chunk
                self.rfile.readline()  # CRLF after each chunk
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, STREAM_CHUNK))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk

    def _drain_request_body(self) -> None:
        for _ in self._request_body():
            pass

    def _send_error(self, kind: str) -> None:
        status, code, message = _ERRORS[kind]
        request_id = uuid.uuid4().hex[:16].upper()
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-amz-request-id", request_id)
        self.send_header("Content-Length", str(0 if self.command == "HEAD" else len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _drop(self) -> None:
        """Close the connection without a response (the client sees it reset or closed)."""
        self.close_connection = True
        with suppress(OSError):
            self.wfile.flush()
        with suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _forward(self, kind: str | None, *, body: bytes | None = None, operation: str = "") -> None:
        proxy = self.proxy
        upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            chunked = (
                body is None and "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
            )
            for name, value in self.headers.items():
                if name.lower() not in _HOP_HEADERS:
                    upstream.putheader(name, value)
            if chunked:
                upstream.putheader("Transfer-Encoding", "chunked")
            elif body is not None:
                upstream.putheader("Content-Length", str(len(body)))
            else:
                upstream.putheader("Content-Length", self.headers.get("Content-Length") or "0")
            upstream.endheaders()
            for chunk in [body] if body is not None else self._request_body():
                upstream.send(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                upstream.send(b"0\r\n\r\n")
            response = upstream.getresponse()
            if kind == "drop_after":
                response.read()  # moto has done it; the client never hears
                self._drop()
                return
            self._relay(response, truncate=kind == "truncate", operation=operation)
        except (OSError, http.client.HTTPException):
            self._drop()
        finally:
            upstream.close()

    def _relay(
        self, response: http.client.HTTPResponse, *, truncate: bool, operation: str = ""
    ) -> None:
        self.send_response_only(response.status, response.reason)
        length = response.getheader("Content-Length")
        rewritten: bytes | None = None
        if self.proxy.strict and operation in _UPLOAD_TIMES and response.status == 200:
            rewritten = self.proxy._upload_times(operation, response.read())
            length = str(len(rewritten))
        for name, value in response.getheaders():
            if name.lower() not in _HOP_HEADERS:
                self.send_header(name, value)
        no_body = self.command == "HEAD" or response.status in (204, 304)
        if length is not None:
            self.send_header("Content-Length", length)
        elif not no_body:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if no_body:
            return
        if rewritten is not None:
            self.wfile.write(rewritten)
            return
        if truncate:
            half = max(int(length or 0) // 2, 1)
            self.wfile.write(response.read(half))
            self._drop()
            return
        while chunk := response.read(STREAM_CHUNK):
            if length is not None:
                self.wfile.write(chunk)
            else:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        if length is None:
            self.wfile.write(b"0\r\n\r\n")


@contextmanager
def task_retries() -> Iterator[Counter]:
    """Count the task-level retries (``NotifyTask`` retrying a transient error) made in this
    process, by task name: what botocore's own retries did not absorb."""
    from celery import signals

    counts: Counter = Counter()

    def on_retry(sender: Any = None, **_: Any) -> None:
        counts[getattr(sender, "name", "?")] += 1

    signals.task_retry.connect(on_retry, weak=False)
    try:
        yield counts
    finally:
        signals.task_retry.disconnect(on_retry)


# --- pytest fixtures (import them explicitly into a test module) ---------------------------------


@pytest.fixture(name="fault_proxy")
def fault_proxy_fixture(moto_endpoint: str) -> Iterator[FaultProxy]:
    """A started proxy in front of the session's moto server, faults ON (10%, seed 1234).

    The process's S3 settings are not touched: use ``s3_faults`` for in-process code, or pass
    ``proxy.url`` as ``S3_ENDPOINT_URL`` to a worker subprocess.
    """
    with FaultProxy(moto_endpoint) as proxy:
        yield proxy


@pytest.fixture(name="s3_faults")
def s3_faults_fixture(
    s3: Any, fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FaultProxy]:
    """``s3`` (clean buckets; its client talks to moto directly) plus this process's
    ``get_client()`` going through the fault proxy."""
    from storage.settings import reload_settings

    monkeypatch.setenv("S3_ENDPOINT_URL", fault_proxy.url)
    reload_settings()
    yield fault_proxy
    monkeypatch.setenv("S3_ENDPOINT_URL", fault_proxy.upstream_url)
    reload_settings()
