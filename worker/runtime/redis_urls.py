"""Redis URLs in their three forms, turned into clients and Celery/RedBeat options.

* ``redis://[user:password@]host:port/db`` — plain TCP;
* ``rediss://[user:password@]host:port/db`` — TLS, the server certificate always verified
  (``ssl_cert_reqs=required``), against ``NOTIFY_REDIS_CA_FILE`` when set, else the system CAs;
* ``sentinel://[:password@]host1:port1;sentinel://host2:port2;…/db`` — Celery's own form: the
  sentinels are asked which server is the master named ``NOTIFY_REDIS_SENTINEL_MASTER``; the
  password (if any) is the master's, ``NOTIFY_REDIS_SENTINEL_PASSWORD`` the sentinels' own.
  With ``NOTIFY_REDIS_SENTINEL_TLS=1`` the sentinels and the data servers both speak TLS,
  verified like ``rediss://`` (``NOTIFY_REDIS_CA_FILE`` or the system CAs). The URL form stays
  Celery's: kombu, Celery's result backend and RedBeat know no TLS sentinel scheme, but each
  takes TLS options beside a sentinel URL.

Three URLs use these forms: ``REDIS_URL`` (broker), ``NOTIFY_RESULT_BACKEND_URL`` (results) and
``NOTIFY_STATE_REDIS_URL`` (the ``notify:`` state and RedBeat). ``check`` connects once at
start-up and turns a failure into a message naming the URL's host, never its password.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.sentinel

from storage.errors import ConfigurationError
from worker.runtime.settings import (
    REDIS_URL_SEPARATOR,
    WorkerSettings,
    get_worker_settings,
    sanitize_url,
)

SCHEMES = ("redis", "rediss", "sentinel")
DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "sentinel": 26379}

# Timeouts shared by every client this project makes: a dead server is noticed within seconds,
# and an idle connection a firewall dropped is found before it is used.
CLIENT_OPTIONS: dict[str, Any] = {
    "socket_timeout": 30,
    "socket_connect_timeout": 10,
    "health_check_interval": 25,
    "retry_on_timeout": True,
}
SENTINEL_OPTIONS: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5}


@dataclass(frozen=True)
class RedisTarget:
    """One parsed Redis URL. ``hosts`` has one entry, or one per sentinel."""

    url: str
    variable: str
    scheme: str
    hosts: tuple[tuple[str, int], ...]
    db: int
    username: str | None
    password: str | None

    @property
    def tls(self) -> bool:
        return self.scheme == "rediss"

    @property
    def sentinel(self) -> bool:
        return self.scheme == "sentinel"

    @property
    def where(self) -> str:
        """Host and port (or every sentinel's), for messages: never the password."""
        joined = ", ".join(f"{host}:{port}" for host, port in self.hosts)
        return f"sentinels {joined}" if self.sentinel else joined


def parse(url: str, variable: str = "REDIS_URL") -> RedisTarget:
    """Parse and check a Redis URL; a bad one is a ConfigurationError naming ``variable``."""

    def bad(why: str) -> ConfigurationError:
        return ConfigurationError(
            f"{variable} is not a usable Redis URL ({sanitize_url(url)}): {why}. Expected "
            "redis://[user:password@]host:port/db, rediss://… (TLS) or "
            "sentinel://[:password@]host1:port1;sentinel://host2:port2/db.",
            code="bad_redis_url",
        )

    chunks = [chunk.strip() for chunk in (url or "").split(REDIS_URL_SEPARATOR) if chunk.strip()]
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
        except ValueError as error:
            raise bad(f"{error}") from None
        if parts.scheme not in SCHEMES:
            raise bad(f"unknown scheme {parts.scheme!r}")
        schemes.add(parts.scheme)
        if not parts.hostname:
            raise bad("no host")
        hosts.append((parts.hostname, port or DEFAULT_PORTS[parts.scheme]))
        if parts.password is not None and password is None:
            password = unquote(parts.password)
        if parts.username and username is None:
            username = unquote(parts.username)
        path = parts.path.strip("/")
        if path:
            try:
                number = int(path)
            except ValueError:
                raise bad(f"bad database number {path!r}") from None
            if number < 0:
                raise bad(f"bad database number {path!r}")
            db = number if db is None else db
    if len(schemes) > 1:
        raise bad("every part must use the same scheme")
    scheme = schemes.pop()
    if scheme != "sentinel" and len(hosts) > 1:
        raise bad("only sentinel:// URLs list several hosts")
    return RedisTarget(url, variable, scheme, tuple(hosts), db or 0, username, password)


def ssl_options(settings: WorkerSettings) -> dict[str, Any]:
    """What redis-py, kombu and Celery's result backend take for a verified TLS connection."""
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if settings.redis_ca_file:
        options["ssl_ca_certs"] = settings.redis_ca_file
    return options


def uses_tls(target: RedisTarget, settings: WorkerSettings) -> bool:
    """Does the connection to the data server (the master, for a sentinel URL) use TLS?"""
    return target.tls or (target.sentinel and settings.sentinel_tls)


def sentinel_kwargs(settings: WorkerSettings) -> dict[str, Any]:
    """Options for the connections to the sentinels themselves."""
    options = dict(SENTINEL_OPTIONS)
    if settings.sentinel_password:
        options["password"] = settings.sentinel_password
    if settings.sentinel_tls:
        options.update(ssl=True, **ssl_options(settings))
    return options


def celery_url(target: RedisTarget) -> str:
    """The URL as Celery and kombu want it. A sentinel URL gets the credentials and database
    number on every part: kombu reads them from the first part, the documented form carries
    them on the first (credentials) and last (database) only."""
    if not target.sentinel:
        return target.url
    auth = ""
    if target.password is not None or target.username:
        raw = urlsplit(target.url.split(REDIS_URL_SEPARATOR)[0])
        auth = raw.netloc.rpartition("@")[0] + "@"
    return REDIS_URL_SEPARATOR.join(
        f"sentinel://{auth}{host}:{port}/{target.db}" for host, port in target.hosts
    )


def transport_options(target: RedisTarget, settings: WorkerSettings) -> dict[str, Any]:
    """Sentinel options for ``broker_transport_options`` / the result backend's (else {})."""
    if not target.sentinel:
        return {}
    return {"master_name": settings.sentinel_master, "sentinel_kwargs": sentinel_kwargs(settings)}


def redbeat_config(target: RedisTarget, settings: WorkerSettings) -> dict[str, Any]:
    """``redbeat_redis_url``, ``redbeat_redis_options`` and ``redbeat_redis_use_ssl``."""
    options: dict[str, Any] = dict(CLIENT_OPTIONS)
    if target.sentinel:
        # RedBeat's own sentinel form: a 'redis-sentinel' URL plus the sentinels in the options.
        options.update(
            sentinels=list(target.hosts),
            service_name=settings.sentinel_master,
            db=target.db,
            password=target.password,
            sentinel_kwargs=sentinel_kwargs(settings),
        )
        if target.username:
            options["username"] = target.username
        return {
            "redbeat_redis_url": "redis-sentinel://",
            "redbeat_redis_options": options,
            # RedBeat turns a dict here into ssl=True plus these options for the master.
            "redbeat_redis_use_ssl": ssl_options(settings) if settings.sentinel_tls else False,
        }
    return {
        "redbeat_redis_url": target.url,
        "redbeat_redis_options": options,
        "redbeat_redis_use_ssl": ssl_options(settings) if target.tls else False,
    }


def make_client(
    url: str,
    settings: WorkerSettings,
    *,
    variable: str = "REDIS_URL",
    decode_responses: bool = True,
    **overrides: Any,
) -> redis.Redis:
    """A redis-py client for any of the three URL forms (a sentinel URL gives a client that
    finds the current master itself, after a failover too)."""
    target = parse(url, variable)
    options = {**CLIENT_OPTIONS, **overrides, "decode_responses": decode_responses}
    if target.sentinel:
        credentials: dict[str, Any] = {"password": target.password}
        if target.username:
            credentials["username"] = target.username
        if settings.sentinel_tls:
            # redis-py's sentinel pool makes its connections TLS ones when given ssl=True.
            credentials.update(ssl=True, **ssl_options(settings))
        manager = redis.sentinel.Sentinel(
            list(target.hosts), sentinel_kwargs=sentinel_kwargs(settings), **credentials
        )
        return manager.master_for(settings.sentinel_master, db=target.db, **options)
    if target.tls:
        options.update(ssl_options(settings))
    return redis.Redis.from_url(url, **options)


def describe_error(target: RedisTarget, error: BaseException) -> str:
    """A clear, password-free sentence for a failure to reach or use ``target``."""
    where = f"Redis at {target.where} ({target.variable})"
    text = str(error)
    if target.password:
        text = text.replace(target.password, "***")
    cause = error.__cause__ or error.__context__
    if isinstance(error, redis.AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text:
        return (
            f"{where} refused the credentials (wrong user or password, or the user is "
            f"disabled): check the user and password in {target.variable}."
        )
    if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            f"{where}: the server's TLS certificate could not be verified ({text}). If the "
            "server uses a private CA, set NOTIFY_REDIS_CA_FILE to that CA's PEM bundle."
        )
    if isinstance(cause, ssl.SSLError) or "SSL" in text:
        return f"{where}: the TLS handshake failed ({text}). Is it a TLS port (rediss://)?"
    if isinstance(error, redis.sentinel.MasterNotFoundError):
        return (
            f"{where}: no sentinel answered with a master named "
            f"{get_worker_settings().sentinel_master!r}: check the sentinels' addresses and "
            "NOTIFY_REDIS_SENTINEL_MASTER (and NOTIFY_REDIS_SENTINEL_PASSWORD if they need one)."
        )
    if isinstance(error, redis.ConnectionError | redis.TimeoutError):
        return f"Cannot connect to {where}: {text}. Check {target.variable} and that Redis runs."
    return f"{where} failed: {type(error).__name__}: {text}"


def urls(settings: WorkerSettings) -> list[tuple[str, str]]:
    """(variable, URL) of every Redis this process uses, without repeats."""
    seen: dict[str, str] = {}
    for variable, url in (
        ("REDIS_URL", settings.redis_url),
        ("NOTIFY_RESULT_BACKEND_URL", settings.result_backend_url),
        ("NOTIFY_STATE_REDIS_URL", settings.state_redis_url),
    ):
        seen.setdefault(url, variable)
    return [(variable, url) for url, variable in seen.items()]


def check(settings: WorkerSettings, timeout: float = 10) -> None:
    """Connect to every configured Redis once (TLS handshake, credentials, PING); raise a
    ConfigurationError with a clear, password-free message on the first failure."""
    for variable, url in urls(settings):
        target = parse(url, variable)
        try:
            client = make_client(
                url,
                settings,
                variable=variable,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry_on_timeout=False,
            )
            try:
                client.ping()
            finally:
                client.close()
        except redis.RedisError as error:
            raise ConfigurationError(describe_error(target, error), code="redis_unusable") from None


def redact(text: str, settings: WorkerSettings) -> str:
    """``text`` with the password of every configured Redis URL replaced by ``**``."""
    for _, url in urls(settings):
        for secret in (parse_quietly(url).password, settings.sentinel_password):
            if secret:
                text = text.replace(secret, "**")
    return text


def parse_quietly(url: str) -> RedisTarget:
    try:
        return parse(url)
    except ConfigurationError:
        return RedisTarget(url, "", "redis", (), 0, None, None)
