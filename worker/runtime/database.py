"""The notification database (PostgreSQL): its settings, one connection pool per process, and
the translation of driver errors into the project's typed errors.

``NOTIFY_DATABASE_URL`` (``postgresql://user:password@host:port/dbname``) turns the database on;
unset, nothing here is used. The pool (psycopg_pool) is keyed by pid and URL, like the S3 and
Redis clients: a prefork child never uses a connection it inherited from its parent (both would
talk on one socket); it opens its own on first use. Connections are checked when taken from the
pool (one round trip), so one that the server closed while idle is replaced instead of failing a
task.

Errors: connection loss, admin shutdown, serialization failure, deadlock, pool timeout (any
``psycopg.OperationalError``) become ``DatabaseTransient`` so the task base class retries with
backoff; data the database refuses (class 22, 23) becomes ``InvalidInput``; a missing table
becomes a ``ConfigurationError`` asking for ``notify-worker db upgrade``. Messages name the host
and database, never the password, and never carry a value from a row.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from storage.errors import ConfigurationError, InvalidInput, NotifyError, TransientError
from storage.settings import env_int

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

URL_VARIABLE = "NOTIFY_DATABASE_URL"
SCHEMES = ("postgresql", "postgres")
APPLICATION_NAME = "notify-worker"


class DatabaseTransient(TransientError):
    code = "database_unavailable"


@dataclass(frozen=True)
class DatabaseSettings:
    url: str
    pool_max: int
    pool_timeout: int
    statement_timeout_ms: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DatabaseSettings | None:
        """The settings, or None when ``NOTIFY_DATABASE_URL`` is unset (the Redis sink)."""
        env = os.environ if environ is None else environ
        url = (env.get(URL_VARIABLE) or "").strip()
        if not url:
            return None
        check_url(url)
        return cls(
            url=url,
            pool_max=env_int(env, "NOTIFY_DATABASE_POOL_MAX", 2, minimum=1),
            pool_timeout=env_int(env, "NOTIFY_DATABASE_POOL_TIMEOUT_SECONDS", 10, minimum=1),
            statement_timeout_ms=1000
            * env_int(env, "NOTIFY_DATABASE_STATEMENT_TIMEOUT_SECONDS", 120, minimum=1),
        )

    @property
    def where(self) -> str:
        return describe_url(self.url)


def check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as error:
        raise ConfigurationError(
            f"{URL_VARIABLE} is not a usable URL ({describe_url(url)}): {error}."
        ) from None
    if parts.scheme not in SCHEMES:
        raise ConfigurationError(
            f"{URL_VARIABLE} must start with postgresql:// (got {parts.scheme or 'no'} scheme). "
            "Expected postgresql://user:password@host:port/dbname."
        )


def describe_url(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{user}:**@{host}"))
    except ValueError:
        return url.split("://", 1)[0] + "://**"


def sqlalchemy_url(url: str) -> str:
    """The same database for SQLAlchemy (Alembic), with the psycopg 3 dialect."""
    return "postgresql+psycopg://" + url.split("://", 1)[1]


_settings_lock = threading.Lock()
_settings_key: tuple[str, ...] | None = None
_settings: DatabaseSettings | None = None


def get_database_settings() -> DatabaseSettings | None:
    """The current settings, read again whenever the variables change (tests set them)."""
    global _settings_key, _settings
    key = tuple(
        os.environ.get(name, "")
        for name in (
            URL_VARIABLE,
            "NOTIFY_DATABASE_POOL_MAX",
            "NOTIFY_DATABASE_POOL_TIMEOUT_SECONDS",
            "NOTIFY_DATABASE_STATEMENT_TIMEOUT_SECONDS",
        )
    )
    if key != _settings_key:
        with _settings_lock:
            _settings = DatabaseSettings.from_env()
            _settings_key = key
    return _settings


def database_enabled() -> bool:
    return get_database_settings() is not None


def require_settings() -> DatabaseSettings:
    settings = get_database_settings()
    if settings is None:
        raise ConfigurationError(
            f"{URL_VARIABLE} is not set: there is no database to use. Set it to "
            "postgresql://user:password@host:port/dbname."
        )
    return settings


def connect_kwargs(settings: DatabaseSettings) -> dict[str, Any]:
    return {
        "application_name": APPLICATION_NAME,
        "connect_timeout": 10,
        # A statement stuck behind a lock fails (and is retried) rather than holding the task.
        "options": f"-c statement_timeout={settings.statement_timeout_ms}",
    }


def connect(settings: DatabaseSettings | None = None, **kwargs: Any) -> Any:
    """A single new connection (for the CLI and tests); the caller closes it."""
    import psycopg

    settings = settings or require_settings()
    with database_errors("connecting", settings):
        return psycopg.connect(settings.url, **{**connect_kwargs(settings), **kwargs})


# --- the per-process pool ---------------------------------------------------------------------

_pool_lock = threading.Lock()
_pool: ConnectionPool | None = None
_pool_pid: int | None = None
_pool_settings: DatabaseSettings | None = None


def get_pool() -> ConnectionPool:
    """The process's pool (made on first use, again after a fork or a settings change)."""
    global _pool, _pool_pid, _pool_settings
    settings = require_settings()
    pid = os.getpid()
    if _pool is None or _pool_pid != pid or _pool_settings != settings:
        with _pool_lock:
            if _pool is None or _pool_pid != pid or _pool_settings != settings:
                from psycopg_pool import ConnectionPool

                if _pool is not None and _pool_pid == pid:
                    _pool.close()
                # The parent's pool (if any) is dropped, never closed here: closing would end
                # connections the parent still uses.
                _pool = ConnectionPool(
                    settings.url,
                    min_size=1,
                    max_size=settings.pool_max,
                    timeout=settings.pool_timeout,
                    kwargs=connect_kwargs(settings),
                    check=ConnectionPool.check_connection,
                    name=f"{APPLICATION_NAME}-{pid}",
                    open=True,
                )
                _pool_pid = pid
                _pool_settings = settings
    return _pool


def reset_pool() -> None:
    """Forget the pool (closing it if this process made it)."""
    global _pool, _pool_pid, _pool_settings
    with _pool_lock:
        if _pool is not None and _pool_pid == os.getpid():
            _pool.close()
        _pool = None
        _pool_pid = None
        _pool_settings = None


@contextmanager
def connection() -> Iterator[Any]:
    """A pooled connection in a transaction: committed if the block ends normally, rolled back
    if it raises; driver errors come out as the project's errors."""
    settings = require_settings()
    with database_errors("using", settings), get_pool().connection() as conn:
        yield conn


# --- errors ------------------------------------------------------------------------------------


def translate(exc: BaseException, doing: str, settings: DatabaseSettings | None) -> Exception:
    """Map a psycopg / psycopg_pool exception to one of ours; anything else comes back as is."""
    import psycopg
    from psycopg import errors as pg

    # SQLAlchemy (used by the migrations) wraps the driver's exception.
    original = getattr(exc, "orig", None)
    if isinstance(original, psycopg.Error):
        exc = original
    where = f"the database at {settings.where}" if settings else "the database"
    state = getattr(getattr(exc, "diag", None), "sqlstate", None) or getattr(exc, "sqlstate", None)
    name = type(exc).__name__
    if isinstance(exc, pg.UndefinedTable):
        return ConfigurationError(
            f"{where} has no notifications table. Fix: run `notify-worker db upgrade`.",
            code="database_schema_missing",
        )
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        # Connection lost or refused, admin shutdown (57P01), serialization failure (40001),
        # deadlock (40P01), statement timeout, too many connections, pool timeout.
        return DatabaseTransient(
            f"{where} failed while {doing} ({name}{f', SQLSTATE {state}' if state else ''}). "
            f"A retry may succeed; if it persists check {URL_VARIABLE} and the server."
        )
    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError):
        # The driver's message may quote the offending value: only its class and code here.
        return InvalidInput(
            f"{where} refused the data ({name}, SQLSTATE {state or '-'}).",
            code="invalid_batch_data",
        )
    return exc


@contextmanager
def database_errors(doing: str, settings: DatabaseSettings | None = None) -> Iterator[None]:
    try:
        yield
    except NotifyError:
        raise
    except Exception as exc:
        translated = translate(exc, doing, settings or get_database_settings())
        if translated is exc:
            raise
        raise translated from exc
