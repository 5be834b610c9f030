"""The worker's event-loop connections to the Redis broker fail fast instead of reconnecting
inside a read.

redis-py (6 and later) gives every connection a default retry: a read that finds its
connection broken reconnects and reads again, inside the same call. kombu reads its event-loop
connections (the BRPOP consumer, the pub/sub of events and remote control) only when the event
loop says their socket is readable; a read that silently reconnects instead blocks the whole
worker until something arrives on the *new* connection, which for the pub/sub may be never.
Seen in the partition tests: a worker whose connections were reset while it was cut off never
took another task. Without the retry the read raises, and Celery's consumer does what it is
built to do on a lost connection: reconnect everything and carry on.

Only the connections kombu makes for its event loop are changed; the synchronous ones (results,
the project's own state, publishing outside the worker) keep redis-py's retries.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from redis.backoff import NoBackoff
from redis.retry import Retry

_original = kombu_redis.Channel._connparams


def _connparams(self: Any, asynchronous: bool = False) -> dict[str, Any]:
    if getattr(self.connection, "client", None) is None:
        # A channel closed after its connection was lost (a Redis failover) may still try to
        # restore its unacknowledged messages through a new pool, and kombu has cleared the
        # connection's client by then: its AttributeError would end the worker ("Unrecoverable
        # error"). A connection error is what Celery expects there; it carries on, and the
        # messages stay in ``unacked`` for the next restore.
        raise redis.ConnectionError("the broker connection is closed")
    params = _original(self, asynchronous=asynchronous)
    if asynchronous:
        params["retry"] = Retry(NoBackoff(), 0)
    return params


def install() -> None:
    """Idempotent: patch kombu's Redis channel once per process."""
    if kombu_redis.Channel._connparams is not _connparams:
        kombu_redis.Channel._connparams = _connparams  # type: ignore[method-assign]


install()
