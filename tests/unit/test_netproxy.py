"""The partition tests' TCP proxy (tests/netproxy.py) against a local echo server and Redis."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from tests.netproxy import TcpProxy


@pytest.fixture
def echo() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # a reset from the proxy ends it
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


def connect(proxy: TcpProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    sock.settimeout(1.0)
    return sock


def test_forwards_both_ways(echo):
    with TcpProxy("127.0.0.1", echo) as proxy, connect(proxy) as sock:
        sock.sendall(b"hello")
        assert sock.recv(100) == b"hello"
        assert proxy.connections == 1


def test_blackhole_stalls_established_and_new_connections_and_heal_delivers_everything(echo):
    with TcpProxy("127.0.0.1", echo) as proxy, connect(proxy) as before:
        before.sendall(b"a")
        assert before.recv(10) == b"a"
        proxy.blackhole()
        assert proxy.partitioned
        before.sendall(b"during")
        with pytest.raises(TimeoutError):
            before.recv(10)
        with connect(proxy) as new:  # accepted...
            new.sendall(b"new")
            with pytest.raises(TimeoutError):
                new.recv(10)  # ...but nothing comes back
            proxy.heal()
            new.settimeout(5)
            before.settimeout(5)
            assert new.recv(10) == b"new"
            assert _read(before, 6) == b"during"  # nothing lost, as TCP would retransmit


def test_blackhole_can_drop_established_connections(echo):
    with TcpProxy("127.0.0.1", echo) as proxy, connect(proxy) as sock:
        sock.sendall(b"x")
        assert sock.recv(10) == b"x"
        proxy.blackhole(drop_established=True)
        time.sleep(0.1)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            sock.sendall(b"y")
            data = sock.recv(10)
            if not data:
                raise ConnectionResetError("closed")


def test_rate_limits_server_to_client(echo):
    with TcpProxy("127.0.0.1", echo, rate=100_000) as proxy, connect(proxy) as sock:
        sock.settimeout(10)
        started = time.monotonic()
        sock.sendall(b"z" * 50_000)
        assert _read(sock, 50_000) == b"z" * 50_000
        assert time.monotonic() - started >= 0.4  # 50 kB at 100 kB/s


def test_redis_through_the_proxy_stalls_while_partitioned(redis_client):
    from worker.runtime.settings import get_worker_settings

    url = get_worker_settings().redis_url
    kwargs = redis_client.connection_pool.connection_kwargs
    host, port = kwargs["host"], kwargs["port"]
    with TcpProxy(host, port) as proxy:
        client = redis.Redis.from_url(proxy.url_for(url), socket_timeout=0.5)
        assert client.ping()
        proxy.blackhole()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        proxy.heal()
        client2 = redis.Redis.from_url(proxy.url_for(url), socket_timeout=5)
        assert client2.ping()


def test_url_for_keeps_scheme_credentials_and_db():
    with TcpProxy("127.0.0.1", 1) as proxy:
        assert (
            proxy.url_for("redis://u:p@10.0.0.1:6379/3") == f"redis://u:p@127.0.0.1:{proxy.port}/3"
        )
        assert proxy.url_for("http://localhost:5000") == f"http://127.0.0.1:{proxy.port}"


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data
