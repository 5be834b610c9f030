"""The workers' Redis URL forms, for the client's own connections (same rules as the workers).

* ``redis://[user:password@]host:port/db``;
* ``rediss://[user:password@]host:port/db``: TLS, the server certificate always verified,
  against ``NOTIFY_REDIS_CA_FILE`` when set, else the system CAs;
* ``sentinel://[:password@]host1:port1;sentinel://host2:port2;.../db``: the sentinels, asked for
  the master named ``NOTIFY_REDIS_SENTINEL_MASTER`` (default ``mymaster``), again after every
  failover; the URL's password is the data servers', ``NOTIFY_REDIS_SENTINEL_PASSWORD`` the
  sentinels' own; ``NOTIFY_REDIS_SENTINEL_TLS=1`` when the sentinels and data servers speak TLS.

The settings come from the environment unless given. Error messages name the hosts, never a
password. This module imports nothing of the workers' packages, and ``redis`` only when a
client is made.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from notify_worker_client.validation import InvalidArgument

SEPARATOR = ";"
DEFAULT_SENTINEL_MASTER = "mymaster"
_PORTS = {"redis": 6379, "rediss": 6379, "sentinel": 26379}
# The workers' timeouts: a dead server is noticed within seconds.
CLIENT_OPTIONS: dict[str, Any] = {
    "socket_timeout": 30,
    "socket_connect_timeout": 10,
    "health_check_interval": 25,
    "retry_on_timeout": True,
}
SENTINEL_OPTIONS: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5}


@dataclass(frozen=True)
class RedisSettings:
    """What a URL alone does not say (the workers' variables of the same names)."""

    ca_file: str | None = None
    sentinel_master: str = DEFAULT_SENTINEL_MASTER
    sentinel_password: str | None = field(default=None, repr=False)
    sentinel_tls: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RedisSettings:
        env = os.environ if environ is None else environ
        ca_file = (env.get("NOTIFY_REDIS_CA_FILE") or "").strip() or None
        if ca_file and not os.path.isfile(ca_file):
            raise InvalidArgument(
                "NOTIFY_REDIS_CA_FILE", f"{ca_file!r} is not a readable file (a PEM CA bundle)"
            )
        flag = (env.get("NOTIFY_REDIS_SENTINEL_TLS") or "").strip().lower()
        if flag not in ("", "0", "no", "false", "off", "1", "yes", "true", "on"):
            raise InvalidArgument("NOTIFY_REDIS_SENTINEL_TLS", f"must be 1 or 0, got {flag!r}")
        return cls(
            ca_file=ca_file,
            sentinel_master=(env.get("NOTIFY_REDIS_SENTINEL_MASTER") or "").strip()
            or DEFAULT_SENTINEL_MASTER,
            sentinel_password=env.get("NOTIFY_REDIS_SENTINEL_PASSWORD") or None,
            sentinel_tls=flag in ("1", "yes", "true", "on"),
        )

    def ssl_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        if self.ca_file:
            options["ssl_ca_certs"] = self.ca_file
        return options

    def sentinel_kwargs(self) -> dict[str, Any]:
        """Options for the connections to the sentinels themselves."""
        options = dict(SENTINEL_OPTIONS)
        if self.sentinel_password:
            options["password"] = self.sentinel_password
        if self.sentinel_tls:
            options.update(ssl=True, **self.ssl_options())
        return options


@dataclass(frozen=True)
class RedisTarget:
    scheme: str
    hosts: tuple[tuple[str, int], ...]
    db: int
    username: str | None
    password: str | None = field(repr=False)

    @property
    def where(self) -> str:
        """Hosts and ports, for messages: never the password."""
        joined = ", ".join(f"{host}:{port}" for host, port in self.hosts)
        return f"sentinels {joined}" if self.scheme == "sentinel" else joined


def parse(url: str, argument: str = "state_redis") -> RedisTarget:
    """Parse one of the three forms; a bad URL is an InvalidArgument without its password."""

    def bad(why: str) -> InvalidArgument:
        return InvalidArgument(
            argument,
            f"not a usable Redis URL: {why} (expected redis://, rediss:// or "
            "sentinel://[:password@]host1:port1;sentinel://host2:port2/db)",
        )

    chunks = [chunk.strip() for chunk in (url or "").split(SEPARATOR) if chunk.strip()]
    if not chunks:
        raise bad("it is empty")
    hosts: list[tuple[str, int]] = []
    schemes = set()
    db: int | None = None
    username = password = None
    for chunk in chunks:
        try:
            parts = urlsplit(chunk)
            port = parts.port
        except ValueError:
            raise bad("a bad port") from None
        if parts.scheme not in _PORTS:
            raise bad(f"unknown scheme {parts.scheme!r}")
        schemes.add(parts.scheme)
        if not parts.hostname:
            raise bad("no host")
        hosts.append((parts.hostname, port or _PORTS[parts.scheme]))
        if parts.password is not None and password is None:
            password = unquote(parts.password)
        if parts.username and username is None:
            username = unquote(parts.username)
        path = parts.path.strip("/")
        if path:
            if not path.isdigit():
                raise bad(f"bad database number {path!r}")
            db = int(path) if db is None else db
    if len(schemes) > 1:
        raise bad("every part must use the same scheme")
    scheme = schemes.pop()
    if scheme != "sentinel" and len(hosts) > 1:
        raise bad("only sentinel:// URLs list several hosts")
    return RedisTarget(scheme, tuple(hosts), db or 0, username, password)


def make_client(
    url: str, settings: RedisSettings | None = None, *, argument: str = "state_redis"
) -> Any:
    """A ``redis.Redis`` for any of the three forms (from a sentinel URL: one that finds the
    current master itself, after a failover too). Needs the ``redis`` extra."""
    try:
        import redis
        import redis.sentinel
    except ImportError:  # pragma: no cover - depends on the install
        raise InvalidArgument(
            argument, "a Redis URL needs the redis package: notify-worker-client[redis]"
        ) from None
    settings = settings or RedisSettings.from_env()
    target = parse(url, argument)
    if target.scheme == "sentinel":
        connection: dict[str, Any] = {"password": target.password}
        if target.username:
            connection["username"] = target.username
        if settings.sentinel_tls:
            connection.update(ssl=True, **settings.ssl_options())
        manager = redis.sentinel.Sentinel(
            list(target.hosts), sentinel_kwargs=settings.sentinel_kwargs(), **connection
        )
        return manager.master_for(settings.sentinel_master, db=target.db, **CLIENT_OPTIONS)
    options = dict(CLIENT_OPTIONS)
    if target.scheme == "rediss":
        options.update(settings.ssl_options())
    return redis.Redis.from_url(url, **options)


def celery_options(
    url: str, settings: RedisSettings | None = None, *, results: bool = False
) -> dict[str, Any]:
    """The Celery settings a broker ``url`` (or, with ``results``, a result backend URL) of
    these forms needs beside the URL itself."""
    settings = settings or RedisSettings.from_env()
    target = parse(url, "result_backend" if results else "broker_url")
    transport, use_ssl = (
        ("result_backend_transport_options", "redis_backend_use_ssl")
        if results
        else ("broker_transport_options", "broker_use_ssl")
    )
    options: dict[str, Any] = {}
    if target.scheme == "sentinel":
        options[transport] = {
            "master_name": settings.sentinel_master,
            "sentinel_kwargs": settings.sentinel_kwargs(),
        }
    if target.scheme == "rediss" or (target.scheme == "sentinel" and settings.sentinel_tls):
        options[use_ssl] = settings.ssl_options()
    return options


def celery_url(url: str, argument: str = "broker_url") -> str:
    """A sentinel URL with the credentials and database on every part (kombu reads the first
    part's; the documented form carries them on the first and last). Others unchanged."""
    target = parse(url, argument)
    if target.scheme != "sentinel":
        return url
    auth = ""
    if target.password is not None or target.username:
        auth = urlsplit(url.split(SEPARATOR)[0].strip()).netloc.rpartition("@")[0] + "@"
    return SEPARATOR.join(
        f"sentinel://{auth}{host}:{port}/{target.db}" for host, port in target.hosts
    )
