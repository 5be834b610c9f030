"""The Redis URL forms of the workers and of the client's own connections: the one parser.

* ``redis://[user:password@]host:port/db``;
* ``rediss://[user:password@]host:port/db``: TLS, the server certificate always verified,
  against ``NOTIFY_REDIS_CA_FILE`` when set, else the system CAs;
* ``sentinel://[:password@]host1:port1;sentinel://host2:port2;.../db``: the sentinels, asked for
  the master named ``NOTIFY_REDIS_SENTINEL_MASTER`` (default ``mymaster``), again after every
  failover; the URL's password is the data servers', ``NOTIFY_REDIS_SENTINEL_PASSWORD`` the
  sentinels' own; ``NOTIFY_REDIS_SENTINEL_TLS=1`` when the sentinels and data servers speak TLS.

The settings come from the environment unless given. Error messages name the hosts, never a
password. This module imports nothing of the workers' packages, and ``redis`` only when a
client is made. The workers' ``worker.runtime.redis_urls`` builds on it: ``RedisTarget.from_url``
and ``RedisURLError`` (the bare reason) let them word the error their own way, and the constants
and the TLS and sentinel options are only here.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from notify_worker_client.validation import InvalidArgument

SEPARATOR = ";"  # between the sentinels of a sentinel:// URL (Celery's own form)
DEFAULT_SENTINEL_MASTER = "mymaster"
DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "sentinel": 26379}
SCHEMES = tuple(DEFAULT_PORTS)
# Timeouts shared by every client the workers and this package make: a dead server is noticed
# within seconds, and an idle connection a firewall dropped is found before it is used.
CLIENT_OPTIONS: dict[str, Any] = {
    "socket_timeout": 30,
    "socket_connect_timeout": 10,
    "health_check_interval": 25,
    "retry_on_timeout": True,
}
SENTINEL_OPTIONS: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5}


class RedisURLError(ValueError):
    """A URL that is none of the three forms; the text is the bare reason (never a password),
    for the caller to put in its own message (``parse`` here, the workers' ``parse``)."""


@dataclass(frozen=True)
class RedisTarget:
    """One parsed Redis URL. ``hosts`` has one entry, or one per sentinel."""

    url: str = field(repr=False)  # as given, password included
    scheme: str
    hosts: tuple[tuple[str, int], ...]
    db: int
    username: str | None
    password: str | None = field(repr=False)

    @classmethod
    def from_url(cls, url: str, **extra: Any) -> RedisTarget:
        """Parse ``url`` (``extra``: a subclass's own fields); raise ``RedisURLError``."""
        chunks = [chunk.strip() for chunk in (url or "").split(SEPARATOR) if chunk.strip()]
        if not chunks:
            raise RedisURLError("it is empty")
        hosts: list[tuple[str, int]] = []
        schemes = set()
        db: int | None = None
        username = password = None
        for chunk in chunks:
            try:
                parts = urlsplit(chunk)
            except ValueError:  # its text may quote the whole address, password included
                raise RedisURLError(
                    "a malformed address (a '[' not closed, or characters a URL cannot hold)"
                ) from None
            try:
                port = parts.port
            except ValueError as error:  # names the port alone
                raise RedisURLError(f"{error}") from None
            if parts.scheme not in DEFAULT_PORTS:
                raise RedisURLError(f"unknown scheme {parts.scheme!r}")
            schemes.add(parts.scheme)
            if not parts.hostname:
                raise RedisURLError("no host")
            hosts.append((parts.hostname, port or DEFAULT_PORTS[parts.scheme]))
            if parts.password is not None and password is None:
                password = unquote(parts.password)
            if parts.username and username is None:
                username = unquote(parts.username)
            path = parts.path.strip("/")
            if path:
                # int() as redis-py and kombu read it, a negative number refused.
                try:
                    number = int(path)
                except ValueError:
                    raise RedisURLError(f"bad database number {path!r}") from None
                if number < 0:
                    raise RedisURLError(f"bad database number {path!r}")
                db = number if db is None else db
        if len(schemes) > 1:
            raise RedisURLError("every part must use the same scheme")
        scheme = schemes.pop()
        if scheme != "sentinel" and len(hosts) > 1:
            raise RedisURLError("only sentinel:// URLs list several hosts")
        return cls(
            url=url,
            scheme=scheme,
            hosts=tuple(hosts),
            db=db or 0,
            username=username,
            password=password,
            **extra,
        )

    @property
    def tls(self) -> bool:
        return self.scheme == "rediss"

    @property
    def sentinel(self) -> bool:
        return self.scheme == "sentinel"

    @property
    def where(self) -> str:
        """Hosts and ports (or every sentinel's), for messages: never the password."""
        joined = ", ".join(f"{host}:{port}" for host, port in self.hosts)
        return f"sentinels {joined}" if self.sentinel else joined

    def celery_url(self) -> str:
        """The URL as Celery and kombu want it. A sentinel URL gets the credentials and
        database number on every part: kombu reads them from the first part, the documented
        form carries them on the first (credentials) and last (database) only."""
        if not self.sentinel:
            return self.url
        auth = ""
        if self.password is not None or self.username:
            # As written (percent-encoded), from the first part that carries them.
            netlocs = (urlsplit(chunk.strip()).netloc for chunk in self.url.split(SEPARATOR))
            auth = next(netloc for netloc in netlocs if "@" in netloc).rpartition("@")[0] + "@"
        return SEPARATOR.join(
            f"sentinel://{auth}{host}:{port}/{self.db}" for host, port in self.hosts
        )


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
                "NOTIFY_REDIS_CA_FILE",
                f"names {ca_file!r}, which is not a readable file: give the PEM bundle of the "
                "CA that signed the Redis server's certificate",
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
        """What redis-py, kombu and Celery's result backend take for a verified TLS
        connection."""
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

    def uses_tls(self, target: RedisTarget) -> bool:
        """Does the connection to the data server (the master, for a sentinel URL) use TLS?"""
        return target.tls or (target.sentinel and self.sentinel_tls)

    def transport_options(self, target: RedisTarget) -> dict[str, Any]:
        """Sentinel options for Celery's broker or result backend transport (else {})."""
        if not target.sentinel:
            return {}
        return {"master_name": self.sentinel_master, "sentinel_kwargs": self.sentinel_kwargs()}


def parse(url: str, argument: str = "state_redis") -> RedisTarget:
    """Parse one of the three forms; a bad URL is an InvalidArgument without its password."""
    try:
        return RedisTarget.from_url(url)
    except RedisURLError as error:
        raise InvalidArgument(
            argument,
            f"not a usable Redis URL: {error} (expected redis://, rediss:// or "
            "sentinel://[:password@]host1:port1;sentinel://host2:port2/db)",
        ) from None


def connect(target: RedisTarget, settings: RedisSettings, **options: Any) -> Any:
    """A ``redis.Redis`` for ``target`` with ``CLIENT_OPTIONS`` (``options`` on top); from a
    sentinel URL, one that finds the current master itself, after a failover too."""
    import redis
    import redis.sentinel

    options = {**CLIENT_OPTIONS, **options}
    if target.sentinel:
        connection: dict[str, Any] = {"password": target.password}
        if target.username:
            connection["username"] = target.username
        if settings.sentinel_tls:
            # redis-py's sentinel pool makes its connections TLS ones when given ssl=True.
            connection.update(ssl=True, **settings.ssl_options())
        manager = redis.sentinel.Sentinel(
            list(target.hosts), sentinel_kwargs=settings.sentinel_kwargs(), **connection
        )
        return manager.master_for(settings.sentinel_master, db=target.db, **options)
    if target.tls:
        options.update(settings.ssl_options())
    return redis.Redis.from_url(target.url, **options)


def make_client(
    url: str, settings: RedisSettings | None = None, *, argument: str = "state_redis"
) -> Any:
    """A ``redis.Redis`` for any of the three forms (from a sentinel URL: one that finds the
    current master itself, after a failover too). Needs the ``redis`` extra."""
    try:
        import redis.sentinel  # noqa: F401 - only whether it is installed; connect uses it
    except ImportError:  # pragma: no cover - depends on the install
        raise InvalidArgument(
            argument, "a Redis URL needs the redis package: notify-worker-client[redis]"
        ) from None
    settings = settings or RedisSettings.from_env()
    return connect(parse(url, argument), settings)


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
    if target.sentinel:
        options[transport] = settings.transport_options(target)
    if settings.uses_tls(target):
        options[use_ssl] = settings.ssl_options()
    return options


def celery_url(url: str, argument: str = "broker_url") -> str:
    """A sentinel URL with the credentials and database on every part (kombu reads the first
    part's; the documented form carries them on the first and last). Others unchanged."""
    return parse(url, argument).celery_url()
