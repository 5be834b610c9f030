"""Upload in the background: part uploads overlap the encoding of the next rows.

``BackgroundWriter`` hands byte chunks to a ``MultipartWriter`` from one thread through a
bounded queue (at most about one part waiting), so memory stays flat while the network and the
CPU both work. The upload itself is only ever touched by that thread until the writer is
closed; completing or aborting happens afterwards, in the caller, with no part in flight.
"""

from __future__ import annotations

import queue
import threading
from types import TracebackType
from typing import Any


class BackgroundWriter:
    """``write(chunk)`` queues; the thread calls ``target.write``. Use as a context manager.

    An error in the thread comes back to the caller at its next ``write`` or at the end of the
    ``with`` block. Leaving the block with an exception stops the thread at once (queued chunks
    are dropped: the upload is about to be aborted anyway).
    """

    def __init__(self, target: Any, *, max_chunks: int) -> None:
        self._target = target
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=max(max_chunks, 1))
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name="report-upload", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is not None or self._cancelled:
                continue  # drain, so a blocked put() in the caller always returns
            try:
                self._target.write(chunk)
            except BaseException as error:  # handed to the caller, who decides
                self._error = error

    def write(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._cancelled = True
            self._stop()
            return
        self._stop()
        if self._error is not None:
            raise self._error
