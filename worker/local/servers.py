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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from storage.errors import ConfigurationError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        return bool(client.ping())
    except redis.RedisError:
        return False


@dataclass
class LocalRedis:
    url: str
    process: subprocess.Popen | None = None
    directory: str | None = None

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


def start_redis_server(port: int | None = None) -> LocalRedis:
    """Start a private, non-persistent redis-server on 127.0.0.1."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ConfigurationError(
            "No Redis answers at REDIS_URL and no redis-server is installed. Install one "
            "(Debian/Ubuntu: `apt-get install redis-server`; macOS: `brew install redis`) or "
            "set REDIS_URL to a running Redis.",
            code="no_redis",
        )
    port = port or free_port()
    directory = tempfile.mkdtemp(prefix="notify-redis-")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
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
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_answers(url, 0.2):
            return LocalRedis(url, process, directory)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    LocalRedis(url, process, directory).stop()
    raise ConfigurationError(f"redis-server did not start on port {port}.", code="no_redis")


def ensure_redis(url: str) -> LocalRedis:
    """Use the Redis at ``url`` if it answers; otherwise start a private one."""
    if redis_answers(url):
        return LocalRedis(url)
    return start_redis_server()


@contextmanager
def embedded_s3(port: int | None = None) -> Iterator[str]:
    """moto's S3 server in a thread, over real HTTP; yields its endpoint URL."""
    import logging

    from moto.server import ThreadedMotoServer

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
