"""Real Redis topologies for the production-Redis tests (import explicitly, not a conftest).

* ``make_tls_files(dir)`` — a private CA and a server certificate for 127.0.0.1/localhost
  (``cryptography``), what ``redis-server --tls-port`` needs;
* ``make_ca(dir, name)`` — another CA (to prove a wrong CA is refused);
* ``SentinelTopology`` — a primary, a replica and three sentinels (``redis-server --sentinel``)
  on free ports of 127.0.0.1, each with its own directory; SIGKILL the primary, wait for the
  promotion, stop everything;
* ``cli(env, *args)`` / ``start_beat(env, log)`` — ``notify-worker`` subprocesses with a given
  environment (the test process's own Celery app stays on the session Redis).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from worker.local.servers import LocalRedis, RedisTls, free_port, start_redis_server

ROOT = Path(__file__).resolve().parent.parent


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: Any, path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(cert: Any, path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(directory: Path, name: str = "notify-test-ca") -> tuple[Path, Any, Any]:
    """A self-signed CA; returns (its PEM path, certificate, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    directory.mkdir(parents=True, exist_ok=True)
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    _write_cert(cert, path)
    return path, cert, key


def make_tls_files(directory: Path) -> RedisTls:
    """A CA, and a server certificate it signed for 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_path, ca_cert, ca_key = make_ca(directory)
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    _write_cert(cert, cert_path)
    _write_key(key, key_path)
    return RedisTls(str(cert_path), str(key_path), str(ca_path))


def project_env(base: dict[str, str], **overrides: str) -> dict[str, str]:
    """The environment for a ``notify-worker`` subprocess: the test process's, plus these."""
    env = dict(base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(overrides)
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``notify-worker ARGS`` (``python -m worker``) with ``env``; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Beat:
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_beat(env: dict[str, str], log_path: Path) -> Beat:
    """``notify-worker beat`` in a subprocess (returns once it runs; it may still be waiting
    for its lock)."""
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the subprocess
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "beat", "--loglevel=INFO"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    return Beat(process, log_path)


MASTER = "notify-test-master"


@dataclass
class SentinelTopology:
    """A primary, a replica and three sentinels, all real processes on 127.0.0.1.

    Failure detection is quick (``down-after-milliseconds`` 1000), so a SIGKILLed primary is
    replaced within a few seconds. ``password`` protects both data servers; the sentinels
    have ``sentinel_password`` (their own ``requirepass``)."""

    directory: Path
    password: str = "sentinel-data-pw"
    sentinel_password: str = "sentinel-own-pw"
    master_name: str = MASTER
    servers: list[LocalRedis] = field(default_factory=list)
    sentinels: list[subprocess.Popen] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)
    # TLS everywhere (data servers, replication, sentinels) when given: NOTIFY_REDIS_SENTINEL_TLS.
    tls: RedisTls | None = None

    def _tls_client(self) -> dict[str, Any]:
        return {"ssl": True, "ssl_ca_certs": self.tls.ca_file} if self.tls else {}

    def start(self) -> SentinelTopology:
        auth = ["--masterauth", self.password]
        if self.tls:
            auth += ["--tls-replication", "yes"]
        primary_dir = self.directory / "primary"
        primary_dir.mkdir(parents=True)
        primary = start_redis_server(
            password=self.password, tls=self.tls, extra_args=auth, directory=str(primary_dir)
        )
        self.servers.append(primary)
        replica_dir = self.directory / "replica"
        replica_dir.mkdir()
        replica = start_redis_server(
            password=self.password,
            tls=self.tls,
            extra_args=[*auth, "--replicaof", "127.0.0.1", str(primary.port)],
            directory=str(replica_dir),
        )
        self.servers.append(replica)
        self._wait(lambda: self._replica_in_sync(primary), "the replica to sync")
        for index in range(3):
            self._start_sentinel(index, primary.port)
        self._wait(self._sentinels_agree, "the sentinels to see the replica and each other")
        return self

    def _start_sentinel(self, index: int, primary_port: int | None) -> None:
        port = free_port()
        folder = self.directory / f"sentinel-{index}"
        folder.mkdir()
        conf = folder / "sentinel.conf"
        listen = [f"port {port}"]
        if self.tls:
            listen = [
                "port 0",
                f"tls-port {port}",
                f"tls-cert-file {self.tls.cert_file}",
                f"tls-key-file {self.tls.key_file}",
                f"tls-ca-cert-file {self.tls.ca_file}",
                "tls-auth-clients no",
                "tls-replication yes",  # TLS to the data servers and the other sentinels
            ]
        conf.write_text(
            "\n".join(
                [
                    *listen,
                    "bind 127.0.0.1",
                    f"dir {folder}",
                    "daemonize no",
                    f"requirepass {self.sentinel_password}",
                    f"sentinel sentinel-pass {self.sentinel_password}",
                    f"sentinel monitor {self.master_name} 127.0.0.1 {primary_port} 2",
                    f"sentinel auth-pass {self.master_name} {self.password}",
                    f"sentinel down-after-milliseconds {self.master_name} 1000",
                    f"sentinel failover-timeout {self.master_name} 4000",
                    f"sentinel parallel-syncs {self.master_name} 1",
                    "",
                ]
            )
        )
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed"
        process = subprocess.Popen(
            [binary, str(conf), "--sentinel", "--loglevel", "notice"],
            stdout=open(folder / "sentinel.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        self.sentinels.append(process)
        self.sentinel_ports.append(port)

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        return redis.Redis(
            "127.0.0.1",
            self.sentinel_ports[index],
            password=self.sentinel_password,
            decode_responses=True,
            socket_timeout=2,
            socket_connect_timeout=2,
            **self._tls_client(),
        )

    def url(self, db: int = 0) -> str:
        """The project's sentinel URL form (credentials on the first part, db on the last)."""
        parts = [f"sentinel://127.0.0.1:{port}" for port in self.sentinel_ports]
        parts[0] = f"sentinel://:{self.password}@127.0.0.1:{self.sentinel_ports[0]}"
        return ";".join(parts) + f"/{db}"

    def env(self, db: int = 0) -> dict[str, str]:
        env = {
            "REDIS_URL": self.url(db),
            "NOTIFY_REDIS_SENTINEL_MASTER": self.master_name,
            "NOTIFY_REDIS_SENTINEL_PASSWORD": self.sentinel_password,
        }
        if self.tls:
            env.update(NOTIFY_REDIS_SENTINEL_TLS="1", NOTIFY_REDIS_CA_FILE=self.tls.ca_file)
        return env

    def master_port(self) -> int | None:
        for index in range(len(self.sentinel_ports)):
            try:
                found = self.sentinel_client(index).sentinel_get_master_addr_by_name(
                    self.master_name
                )
            except redis.RedisError:
                continue
            if found:
                return int(found[1])
        return None

    def server(self, port: int) -> redis.Redis:
        return redis.Redis(
            "127.0.0.1",
            port,
            password=self.password,
            decode_responses=True,
            socket_timeout=5,
            **self._tls_client(),
        )

    def primary(self) -> LocalRedis:
        port = self.master_port()
        return next(s for s in self.servers if s.port == port)

    def kill_primary(self) -> LocalRedis:
        """SIGKILL the current primary (nothing flushed); returns it."""
        doomed = self.primary()
        doomed.kill()
        return doomed

    def wait_for_promotion(self, old_port: int, timeout: float = 60) -> int:
        """Wait until the sentinels name another master and it accepts writes; its port."""

        def promoted() -> int | None:
            port = self.master_port()
            if port is None or port == old_port:
                return None
            try:
                role = self.server(port).execute_command("ROLE")[0]
            except redis.RedisError:
                return None
            return port if role == "master" else None

        return self._wait(promoted, "a replica to be promoted", timeout)

    def _replica_in_sync(self, primary: LocalRedis) -> bool:
        info = self.server(primary.port).info("replication")
        return (
            info.get("connected_slaves", 0) >= 1 and info.get("slave0", {}).get("state") == "online"
        )

    def _sentinels_agree(self) -> bool:
        for index in range(len(self.sentinel_ports)):
            try:
                master = self.sentinel_client(index).sentinel_master(self.master_name)
            except redis.RedisError:
                return False
            if (
                int(master.get("num-slaves", 0)) < 1
                or int(master.get("num-other-sentinels", 0)) < 2
            ):
                return False
        return True

    @staticmethod
    def _wait(predicate: Any, what: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def stop(self) -> None:
        for process in self.sentinels:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
        for server in self.servers:
            server.directory = None  # the test's tmp_path is removed by pytest
            server.stop()
