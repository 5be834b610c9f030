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

The parsing, the constants and the TLS and sentinel options are the client package's
(``notify_worker_client.redis_urls``, which the web app uses for the same URLs): one set of
rules. This module adds the workers' side: errors naming the variable, RedBeat's options, the
start-up check and the messages.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import redis
import redis.sentinel
from notify_worker_client import redis_urls as client_urls
from notify_worker_client.redis_urls import CLIENT_OPTIONS, RedisSettings, RedisURLError
from notify_worker_client.redis_urls import DEFAULT_PORTS as DEFAULT_PORTS
from notify_worker_client.redis_urls import SCHEMES as SCHEMES
from notify_worker_client.redis_urls import SENTINEL_OPTIONS as SENTINEL_OPTIONS

from storage.errors import ConfigurationError
from worker.runtime.settings import WorkerSettings, get_worker_settings, sanitize_url


@dataclass(frozen=True)
class RedisTarget(client_urls.RedisTarget):
    """One parsed Redis URL (the client package's, parsed by its rules) and the variable it
    came from. ``hosts`` has one entry, or one per sentinel."""

    variable: str


def parse(url: str, variable: str = "REDIS_URL") -> RedisTarget:
    """Parse and check a Redis URL; a bad one is a ConfigurationError naming ``variable``."""
    try:
        return RedisTarget.from_url(url, variable=variable)
    except RedisURLError as why:
        raise ConfigurationError(
            f"{variable} is not a usable Redis URL ({sanitize_url(url)}): {why}. Expected "
            "redis://[user:password@]host:port/db, rediss://… (TLS) or "
            "sentinel://[:password@]host1:port1;sentinel://host2:port2/db.",
            code="bad_redis_url",
        ) from None


def redis_settings(settings: WorkerSettings) -> RedisSettings:
    """The workers' Redis variables in the client package's form, which builds the options."""
    return RedisSettings(
        ca_file=settings.redis_ca_file,
        sentinel_master=settings.sentinel_master,
        sentinel_password=settings.sentinel_password,
        sentinel_tls=settings.sentinel_tls,
    )


def ssl_options(settings: WorkerSettings) -> dict[str, Any]:
    """What redis-py, kombu and Celery's result backend take for a verified TLS connection."""
    return redis_settings(settings).ssl_options()


def uses_tls(target: RedisTarget, settings: WorkerSettings) -> bool:
    """Does the connection to the data server (the master, for a sentinel URL) use TLS?"""
    return redis_settings(settings).uses_tls(target)


def sentinel_kwargs(settings: WorkerSettings) -> dict[str, Any]:
    """Options for the connections to the sentinels themselves."""
    return redis_settings(settings).sentinel_kwargs()


def celery_url(target: RedisTarget) -> str:
    """The URL as Celery and kombu want it (a sentinel URL: credentials and database number
    on every part, where kombu reads them)."""
    return target.celery_url()


def transport_options(target: RedisTarget, settings: WorkerSettings) -> dict[str, Any]:
    """Sentinel options for ``broker_transport_options`` / the result backend's (else {})."""
    return redis_settings(settings).transport_options(target)


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
    return client_urls.connect(
        target, redis_settings(settings), **overrides, decode_responses=decode_responses
    )


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
        return RedisTarget(
            url=url, scheme="redis", hosts=(), db=0, username=None, password=None, variable=""
        )
