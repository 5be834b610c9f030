"""Worker settings from the environment: one explicit object, read once per process."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from notify_worker_client.redis_urls import SEPARATOR as REDIS_URL_SEPARATOR
from notify_worker_client.redis_urls import RedisSettings
from notify_worker_client.validation import InvalidArgument

from storage.errors import ConfigurationError
from storage.settings import env_int
from worker.runtime import queues

DEFAULT_REDIS_URL = "redis://localhost:6379/0"

# REDIS_URL_SEPARATOR (';' between the sentinels of a sentinel:// URL) and the Redis variables'
# rules are the client package's, which reads these URLs for the web app and for us.


def sanitize_url(url: str) -> str:
    """``url`` with any password replaced by ``**`` (as Celery prints its broker URL), in every
    ``;``-separated part of a sentinel URL. Use it wherever a Redis URL may reach a log line, an
    error or the terminal."""
    parts = []
    for chunk in (url or "").split(REDIS_URL_SEPARATOR):
        try:
            split = urlsplit(chunk)
            password = split.password
        except ValueError:  # e.g. a non-numeric port: hide everything after the scheme
            parts.append(chunk.split("://", 1)[0] + "://**" if "://" in chunk else "**")
            continue
        if password is None and "@" not in split.netloc:
            parts.append(chunk)
            continue
        userinfo, _, hostport = split.netloc.rpartition("@")
        user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
        masked = f"{user}:**@{hostport}" if password is not None else f"**@{hostport}"
        parts.append(urlunsplit(split._replace(netloc=masked)))
    return REDIS_URL_SEPARATOR.join(parts)


def result_backend_for(redis_url: str) -> str:
    """The same Redis server, next database number: results never mix with the queues.

    For a sentinel URL the database number is the last part's (``…;sentinel://h:p/db``)."""
    chunks = redis_url.split(REDIS_URL_SEPARATOR)
    parts = urlsplit(chunks[-1])
    path = parts.path.strip("/")
    try:
        db = int(path) if path else 0
    except ValueError:
        raise ConfigurationError(
            f"REDIS_URL has a bad database number: {path!r} ({sanitize_url(redis_url)})."
        ) from None
    chunks[-1] = urlunsplit(parts._replace(path=f"/{(db + 1) % 16}"))
    return REDIS_URL_SEPARATOR.join(chunks)


def _redis_variables(env: Mapping[str, str]) -> RedisSettings:
    """The CA file and sentinel variables, read by the client package's rules (the web app
    reads the same variables the same way)."""
    try:
        return RedisSettings.from_env(env)
    except InvalidArgument as error:
        raise ConfigurationError(f"{error.argument} {error.message}.") from None


@dataclass(frozen=True)
class WorkerSettings:
    # URLs may carry passwords: kept out of repr(), so a logged settings object shows none.
    redis_url: str = field(repr=False)
    result_backend_url: str = field(repr=False)
    state_redis_url: str = field(repr=False)
    redis_ca_file: str | None
    sentinel_master: str
    sentinel_password: str | None = field(repr=False)
    visibility_timeout: int
    task_time_limit: int
    task_soft_time_limit: int
    job_stale_seconds: int
    state_ttl_seconds: int
    max_redeliveries: int
    max_retries: int
    csv_max_rows: int
    bulk_threshold_rows: int
    row_sink_task: str
    row_sink_queue: str
    service_burst_jobs: int
    service_burst_seconds: int
    transient_letter_alert_hours: int
    log_format: str
    log_level: str
    # sentinel:// only: the sentinels and the data servers they name speak TLS.
    sentinel_tls: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerSettings:
        env = os.environ if environ is None else environ
        redis_url = (env.get("REDIS_URL") or DEFAULT_REDIS_URL).strip()
        visibility = env_int(env, "NOTIFY_VISIBILITY_TIMEOUT_SECONDS", 3600, minimum=10)
        # Hard limit at half the visibility timeout: a task is always dead, and its message
        # requeued by reject-on-worker-lost, long before Redis would hand it out again.
        hard = env_int(env, "NOTIFY_TASK_TIME_LIMIT_SECONDS", visibility // 2, minimum=5)
        if hard >= visibility:
            raise ConfigurationError(
                "NOTIFY_TASK_TIME_LIMIT_SECONDS must be below NOTIFY_VISIBILITY_TIMEOUT_SECONDS "
                f"({hard} >= {visibility}): Redis would redeliver tasks that are still running."
            )
        log_format = (env.get("NOTIFY_LOG_FORMAT") or "text").strip().lower()
        if log_format not in ("text", "json"):
            raise ConfigurationError(f"NOTIFY_LOG_FORMAT must be text or json, got {log_format!r}.")
        redis_variables = _redis_variables(env)
        return cls(
            redis_url=redis_url,
            result_backend_url=(env.get("NOTIFY_RESULT_BACKEND_URL") or "").strip()
            or result_backend_for(redis_url),
            state_redis_url=(env.get("NOTIFY_STATE_REDIS_URL") or "").strip() or redis_url,
            redis_ca_file=redis_variables.ca_file,
            sentinel_master=redis_variables.sentinel_master,
            sentinel_password=redis_variables.sentinel_password,
            visibility_timeout=visibility,
            task_time_limit=hard,
            task_soft_time_limit=max(hard - max(hard // 10, 2), 1),
            job_stale_seconds=env_int(env, "NOTIFY_JOB_STALE_SECONDS", 300, minimum=1),
            state_ttl_seconds=env_int(env, "NOTIFY_STATE_TTL_SECONDS", 7 * 24 * 3600, minimum=60),
            max_redeliveries=env_int(env, "NOTIFY_MAX_REDELIVERIES", 3, minimum=0),
            max_retries=env_int(env, "NOTIFY_MAX_RETRIES", 8, minimum=0),
            csv_max_rows=env_int(env, "NOTIFY_CSV_MAX_ROWS", 100_000, minimum=1),
            bulk_threshold_rows=env_int(env, "NOTIFY_BULK_THRESHOLD_ROWS", 5_000, minimum=1),
            row_sink_task=(env.get("NOTIFY_ROW_SINK_TASK") or "notify.notifications.save_batch"),
            # The deployment's queue prefix goes in front of the sink's queue too.
            row_sink_queue=queues.prefixed(
                (env.get("NOTIFY_ROW_SINK_QUEUE") or "database-tasks").strip(),
                queues.queue_prefix(env),
            ),
            # Jobs one service may start on the normal lane per window while others wait.
            service_burst_jobs=env_int(env, "NOTIFY_SERVICE_BURST_JOBS", 2, minimum=1),
            service_burst_seconds=env_int(env, "NOTIFY_SERVICE_BURST_SECONDS", 10, minimum=5),
            transient_letter_alert_hours=env_int(
                env, "NOTIFY_TRANSIENT_LETTER_ALERT_HOURS", 24, minimum=1
            ),
            log_format=log_format,
            log_level=(env.get("NOTIFY_LOG_LEVEL") or "INFO").strip().upper(),
            sentinel_tls=redis_variables.sentinel_tls,
        )


_settings: WorkerSettings | None = None


def get_worker_settings() -> WorkerSettings:
    global _settings
    if _settings is None:
        _settings = WorkerSettings.from_env()
    return _settings


def reload_worker_settings() -> WorkerSettings:
    global _settings
    _settings = None
    return get_worker_settings()
