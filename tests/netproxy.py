"""A TCP proxy that can cut a "host" off the network and heal it, for partition tests.

Each worker "host" in a partition test reaches Redis and S3 only through its own proxies on
127.0.0.1, so the test can partition that host alone:

* ``blackhole()``: from now on nothing is forwarded either way, on established connections
  and on new ones (accepted, then left silent), like packets dropped on the floor. TCP keeps
  the bytes it could not deliver, so when the partition heals the streams carry on intact,
  as they would after retransmission.
* ``blackhole(drop_established=True)``: established connections are also reset at once (RST),
  like a middlebox that forgot them; new ones stay silent until the heal.
* ``heal()``: forwarding resumes everywhere.
* ``rate``: bytes per second from the server to the client (None: as fast as it goes), to make
  a long S3 read take long enough to be cut in the middle.

Plain threads and sockets; nothing outside 127.0.0.0/8, no namespaces, no privileges.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from types import TracebackType

CHUNK = 16 * 1024
POLL = 0.05


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, rate: float | None = None) -> None:
        self.target = (target_host, target_port)
        self.rate = rate
        self._open = threading.Event()
        self._open.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(POLL)
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    # --- control -------------------------------------------------------------------------------

    @property
    def partitioned(self) -> bool:
        return not self._open.is_set()

    def blackhole(self, *, drop_established: bool = False) -> None:
        self._open.clear()
        if drop_established:
            with self._lock:
                pairs = list(self._pairs)
            for pair in pairs:
                pair.drop.set()  # its own thread resets both sockets (no cross-thread close)

    def heal(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._closed.set()
        self._open.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(5)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def url_for(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's (same scheme, path, db)."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    # --- forwarding ------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        # Accepted even while partitioned; the upstream connection waits for the heal, so the
        # client sees a connection that says nothing.
        while not self._open.wait(POLL):
            if self._closed.is_set():
                break
        if self._closed.is_set():
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            _reset(client)
            return
        pair = _Pair(client, upstream)
        with self._lock:
            self._pairs.append(pair)
            self.connections += 1
        try:
            self._forward(pair)
        finally:
            with self._lock:
                self._pairs.remove(pair)

    def _forward(self, pair: _Pair) -> None:
        """One thread per connection moves bytes both ways, so only it ever closes its sockets
        (a socket closed under another thread's recv may hand its number to a new one)."""
        client, upstream = pair.client, pair.upstream
        for sock in (client, upstream):
            sock.settimeout(10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Throttled: small reads (a twentieth of a second's worth), so the pace is even.
        down = CHUNK if self.rate is None else min(CHUNK, max(int(self.rate / 20), 1))
        try:
            while not self._closed.is_set():
                if pair.drop.is_set():
                    _reset(client)
                    _reset(upstream)
                    return
                if not self._open.wait(POLL):
                    continue  # partitioned: read nothing, so the senders' buffers fill up
                readable, _, _ = select.select([client, upstream], [], [], POLL)
                for source in readable:
                    sink = upstream if source is client else client
                    data = source.recv(CHUNK if source is client else down)
                    if not data:
                        return
                    sink.sendall(data)
                    if self.rate and source is upstream:
                        time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()


class _Pair:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.drop = threading.Event()


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a connection a network device dropped."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
