"""Local stand-ins for the demo and the tests: a private redis-server and an embedded S3.

Both are used only when nothing real answers: ``ensure_redis`` first pings ``REDIS_URL``;
``embedded_s3`` runs moto's server in a thread, speaking real HTTP on a free port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import redis

from storage.errors import ConfigurationError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_answers(url: str, timeout: float = 1.0, **options: Any) -> bool:
    """``options`` go to redis-py as they are (e.g. ``ssl_ca_certs`` for a TLS server)."""
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout, **options
        )
        return bool(client.ping())
    except redis.RedisError:
        return False


@dataclass(frozen=True)
class RedisTls:
    """A TLS listener's files: the server's certificate and key, and the CA that signed it."""

    cert_file: str
    key_file: str
    ca_file: str


@dataclass
class LocalRedis:
    url: str
    process: subprocess.Popen | None = None
    directory: str | None = None
    port: int | None = None

    def kill(self) -> None:
        """SIGKILL the server (a crash: nothing flushed), keeping its directory."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


def start_redis_server(
    port: int | None = None,
    *,
    password: str | None = None,
    tls: RedisTls | None = None,
    extra_args: Sequence[str] = (),
    directory: str | None = None,
) -> LocalRedis:
    """Start a private, non-persistent redis-server on 127.0.0.1.

    ``password``: ``requirepass`` (the URL carries it). ``tls``: the server listens only on a
    TLS port (``rediss://`` URL; clients are not asked for certificates). ``extra_args`` go to
    redis-server as they are (e.g. ``--user …`` ACL rules, ``--replicaof``)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ConfigurationError(
            "No Redis answers at REDIS_URL and no redis-server is installed. Install one "
            "(Debian/Ubuntu: `apt-get install redis-server`; macOS: `brew install redis`) or "
            "set REDIS_URL to a running Redis.",
            code="no_redis",
        )
    port = port or free_port()
    directory = directory or tempfile.mkdtemp(prefix="notify-redis-")
    listen = ["--port", str(port)]
    ping_options: dict[str, Any] = {}
    if tls is not None:
        listen = ["--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no"]
        listen += ["--tls-cert-file", tls.cert_file, "--tls-key-file", tls.key_file]
        listen += ["--tls-ca-cert-file", tls.ca_file]
        ping_options = {"ssl_ca_certs": tls.ca_file}
    if password is not None:
        listen += ["--requirepass", password]
    process = subprocess.Popen(
        [
            binary,
            *listen,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            directory,
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            *extra_args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    auth = f":{quote(password, safe='')}@" if password is not None else ""
    url = f"{'rediss' if tls else 'redis'}://{auth}127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_answers(url, 0.2, **ping_options):
            return LocalRedis(url, process, directory, port)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    LocalRedis(url, process, directory, port).stop()
    raise ConfigurationError(f"redis-server did not start on port {port}.", code="no_redis")


def ensure_redis(url: str) -> LocalRedis:
    """Use the Redis at ``url`` if it answers; otherwise start a private one."""
    options: dict[str, Any] = {}
    if url.startswith("rediss://") and os.environ.get("NOTIFY_REDIS_CA_FILE"):
        options["ssl_ca_certs"] = os.environ["NOTIFY_REDIS_CA_FILE"]
    if redis_answers(url, **options):
        return LocalRedis(url)
    return start_redis_server()


@contextmanager
def embedded_s3(port: int | None = None) -> Iterator[str]:
    """moto's S3 server in a thread, over real HTTP; yields its endpoint URL."""
    import logging

    try:
        from moto.server import ThreadedMotoServer
    except ImportError:  # moto is the `demo` extra: production installs do without it
        raise ConfigurationError(
            "The embedded S3 needs moto, which is not installed. Install the demo extra: "
            "pip install 'notify-worker[demo]' (make demo does), or set S3_ENDPOINT_URL to an "
            "S3-compatible server (MinIO, moto server) or real S3."
        ) from None

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def use_fake_credentials_if_none() -> None:
    """moto accepts any credentials; set dummy ones only if the chain has none at all."""
    import boto3

    if boto3.session.Session().get_credentials() is None:
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
