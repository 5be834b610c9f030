"""The one task base class: everything cross-cutting lives here, so tasks stay thin.

For every task it
* sets the log context (task id, task name, service id, upload id, and the sender's request id
  from the ``notify_request_id`` message header);
* caps redeliveries: a message delivered more than ``NOTIFY_MAX_REDELIVERIES`` extra times
  (a poison message that kills its worker, say) is recorded in ``notify:deadletter`` and dropped;
* retries transient errors (throttling, 5xx, dropped connections) with exponential backoff and
  jitter, and records the task as a dead letter when the retries run out;
* never retries bad input: a ``NotifyError`` becomes the ``failed`` result (docs/tasks.md) at once;
* turns an unexpected exception into a ``failed`` result with ``internal_error``, logging the
  traceback and recording a dead letter so an operator can replay it after a fix.
"""

from __future__ import annotations

import inspect
import logging
import random
from typing import Any

import redis
from botocore.exceptions import BotoCoreError, ClientError
from celery import Task
from celery.exceptions import Ignore, Retry, SoftTimeLimitExceeded
from kombu.exceptions import OperationalError

from storage.errors import InvalidInput, NotifyError, TransientError, translate
from worker.runtime import deadletter, leases, queues
from worker.runtime.logs import clean_request_id, log_context
from worker.runtime.redis_state import get_redis, key
from worker.runtime.settings import get_worker_settings

logger = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 2
BACKOFF_MAX_SECONDS = 300
_TRANSIENT_TYPES = (
    TransientError,
    redis.ConnectionError,
    redis.TimeoutError,
    OperationalError,
    ConnectionError,
    TimeoutError,
)


def backoff_seconds(retries: int) -> float:
    """Exponential backoff with "equal jitter": the ceiling is ``base * 2**retries`` capped at
    ``BACKOFF_MAX_SECONDS`` (2, 4, 8 … 300 s), and the delay is uniform in its upper half,
    [ceiling / 2, ceiling], so a retry never comes back at once yet retries still spread out."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2**retries)
    return round(random.uniform(ceiling / 2, ceiling), 2)


def _arguments_problem(signature: inspect.Signature, args: tuple, kwargs: dict) -> str:
    """What is wrong with the arguments, naming at most five (names cut to 40 characters)."""
    p = inspect.Parameter
    params = signature.parameters
    kinds = {param.kind for param in params.values()}
    by_position = (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    positional = [name for name, param in params.items() if param.kind in by_position]
    given = set(positional[: len(args)]) | set(kwargs)
    problems = []
    unknown = sorted(str(name)[:40] for name in kwargs if name not in params)
    if unknown and p.VAR_KEYWORD not in kinds:
        problems.append(f"unknown argument(s): {', '.join(unknown[:5])}")
    missing = [
        name
        for name, param in params.items()
        if param.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and param.default is param.empty
        and name not in given
    ]
    if missing:
        problems.append(f"missing argument(s): {', '.join(missing[:5])}")
    if len(args) > len(positional) and p.VAR_POSITIONAL not in kinds:
        problems.append("arguments must be given by name")
    return ("; ".join(problems) or "the arguments do not fit the task") + "."


def classify(exc: BaseException) -> BaseException:
    """Translate library errors that escaped the storage layer into ours."""
    if isinstance(exc, ClientError | BotoCoreError):
        return translate(exc)
    return exc


class NotifyTask(Task):
    """Base class of every task (``task_cls`` of the app)."""

    # Retries are ours (below); Celery's autoretry is not used.
    max_retries: int | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        task_id = request.id
        with log_context(
            task_id=task_id,
            task_name=self.name,
            service_id=kwargs.get("service_id"),
            upload_id=kwargs.get("upload_id"),
            request_id=clean_request_id(request.get(queues.REQUEST_ID_HEADER)),
        ):
            if (
                task_id
                and not request.called_directly
                and self.name in leases.LEASED_TASKS
                and leases.superseded(task_id, request.get(leases.GENERATION_HEADER))
            ):
                # Re-sent by the reconciler after its worker went silent: the newer delivery
                # runs it (worker/runtime/leases.py). Ignore: acknowledged, and no result stored
                # over the one the re-sent run left under the same task id.
                logger.warning("an older delivery of a re-sent task; dropped")
                raise Ignore()
            if task_id and not request.called_directly and self._over_redelivery_cap():
                return self._dead_letter(
                    kwargs,
                    "redelivery_cap",
                    "The message was delivered too many times without finishing "
                    "(a poison message?); recorded in the dead-letter store.",
                )
            try:
                self._check_arguments(args, kwargs)
                return self.run(*args, **kwargs)
            except (Retry, Ignore):
                raise  # Celery's own control flow (a retry; a task replaced by another)
            except SoftTimeLimitExceeded:
                # Acknowledged, not redelivered: CSV jobs are resumed from their checkpoint by
                # the reconciler; other tasks are safe to send again (see docs/operations.md).
                logger.error("soft time limit reached; the task stops here")
                raise
            except BaseException as raw:
                exc = classify(raw)
                if isinstance(exc, _TRANSIENT_TYPES):
                    return self._retry_transient(exc, raw, kwargs)
                if isinstance(exc, NotifyError):
                    logger.warning("failed: %s (%s)", exc.code, exc.message)
                    return exc.as_result()
                if not isinstance(raw, Exception):
                    raise  # KeyboardInterrupt, SystemExit: let the worker handle them
                logger.exception("unexpected error")
                return self._dead_letter(
                    kwargs, "internal_error", f"Unexpected {type(raw).__name__}; see the logs."
                )

    # --- helpers -----------------------------------------------------------------------------

    def _check_arguments(self, args: tuple, kwargs: dict) -> None:
        """Refuse arguments the task does not take, or lacks, as bad input (never a TypeError)."""
        signature = self.__dict__.get("_run_signature")
        if signature is None:  # worked out once per task (tens of microseconds)
            signature = self.__dict__["_run_signature"] = inspect.signature(self.run)
        try:
            signature.bind(*args, **kwargs)
        except TypeError:
            problem = _arguments_problem(signature, args, kwargs)
            raise InvalidInput(f"{self.name}: {problem}") from None

    def _over_redelivery_cap(self) -> bool:
        settings = get_worker_settings()
        counter = key("deliveries", self.request.id, str(self.request.retries or 0))
        try:
            r = get_redis()
            with r.pipeline() as pipe:
                pipe.incr(counter)
                pipe.expire(counter, settings.visibility_timeout * (settings.max_redeliveries + 2))
                deliveries = pipe.execute()[0]
        except redis.RedisError:
            return False  # the broker is Redis too: if it is down we are not running anyway
        return int(deliveries) > settings.max_redeliveries + 1

    def _retry_transient(self, exc: BaseException, raw: BaseException, kwargs: dict) -> Any:
        settings = get_worker_settings()
        retries = self.request.retries or 0
        limit = settings.max_retries if self.max_retries is None else self.max_retries
        code = getattr(exc, "code", "transient_error")
        if retries >= limit or self.request.called_directly:
            message = getattr(exc, "message", str(exc))
            logger.error("giving up after %d retries: %s", retries, code)
            return self._dead_letter(kwargs, code, f"Gave up after {retries} retries: {message}")
        delay = backoff_seconds(retries)
        logger.warning("transient error %s; retry %d/%d in %.1fs", code, retries + 1, limit, delay)
        raise self.retry(exc=raw, countdown=delay, max_retries=limit)

    def _dead_letter(self, kwargs: dict, code: str, message: str) -> dict[str, str]:
        delivery = self.request.delivery_info or {}
        queue = delivery.get("routing_key") or getattr(self, "queue", None)
        # A task carrying recipients keeps a reference to rebuild them from, not the data.
        task, stored = deadletter.stored_form(self.name, dict(kwargs))
        try:
            deadletter.record(
                deadletter.DeadLetter(
                    task_id=self.request.id or "",
                    task=task,
                    queue=queue if task == self.name else None,
                    kwargs=stored,
                    reason=message,
                    error_code=code,
                    failed_task=None if task == self.name else self.name,
                )
            )
        except redis.RedisError:
            logger.exception("could not record the dead letter")
        return {"status": "failed", "error_code": code, "error_message": message}
