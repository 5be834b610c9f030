"""RedBeat, riding out a Redis failover instead of exiting.

RedBeat extends its lock at the start of every tick; a connection error there (the primary has
just died and the sentinels or the managed endpoint still point at it for a second or two) would
end the beat process. This scheduler retries the tick for as long as the lock can still be
ours (its timeout less one loop interval), then gives up as RedBeat would. A lock found taken by
another beat (``LockNotOwnedError``) still ends this one at once: never two schedulers.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from redbeat import RedBeatScheduler

from worker.runtime.beat import BEAT_MAX_LOOP_INTERVAL

logger = logging.getLogger(__name__)

RETRY_PAUSE_SECONDS = 1.0


class NotifyRedBeatScheduler(RedBeatScheduler):
    def tick(self, *args: Any, **kwargs: Any) -> float:
        patience = max(float(self.lock_timeout or 0) - BEAT_MAX_LOOP_INTERVAL, 1.0)
        deadline = time.monotonic() + patience
        while True:
            try:
                return super().tick(*args, **kwargs)
            except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError) as error:
                if time.monotonic() + RETRY_PAUSE_SECONDS > deadline:
                    raise
                # The message has no URL in it: redis-py names host and port only.
                logger.warning("beat: Redis unavailable (%s); retrying the tick", error)
                time.sleep(RETRY_PAUSE_SECONDS)
