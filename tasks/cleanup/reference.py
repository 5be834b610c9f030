"""The reference-check plug-in: asks the web app which keys are still in use.

``NOTIFY_REFERENCE_CHECK`` names a callable by dotted path, ``package.module:callable`` or
``package.module.callable``. It is called as ``check(purpose, keys)`` with a list of at most
1,000 keys and returns the keys that are still referenced (any iterable of strings; keys it
was not asked about are ignored). Default: none, so reference-only buckets are not swept.

A check that raises ``TransientError`` is retried by the task; any other exception fails the
run with ``reference_check_failed`` before anything of that batch is deleted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence

from storage.errors import NotifyError
from worker.runtime.plugins import load_callable

ENV = "NOTIFY_REFERENCE_CHECK"
MAX_KEYS_PER_CALL = 1000

RawCheck = Callable[[str, list[str]], Iterable[str]]


class ReferenceCheckFailed(NotifyError):
    code = "reference_check_failed"


class ReferenceCheck:
    """A loaded plug-in, called in batches of at most 1,000 keys, its answer checked."""

    def __init__(self, raw: RawCheck, name: str) -> None:
        self.raw = raw
        self.name = name

    def __call__(self, purpose: str, keys: Sequence[str]) -> set[str]:
        referenced: set[str] = set()
        for start in range(0, len(keys), MAX_KEYS_PER_CALL):
            batch = list(keys[start : start + MAX_KEYS_PER_CALL])
            referenced |= self._call(purpose, batch)
        return referenced

    def _call(self, purpose: str, batch: list[str]) -> set[str]:
        try:
            answer = self.raw(purpose, batch)
            if isinstance(answer, str | bytes) or answer is None:
                raise TypeError(f"returned {type(answer).__name__}, not a set of keys")
            found = {k for k in answer if isinstance(k, str)}
        except NotifyError:
            raise  # TransientError is retried by the task; ours carry their own code
        except Exception as error:
            raise ReferenceCheckFailed(
                f"The reference check {self.name} failed for {purpose} "
                f"({type(error).__name__}: {str(error)[:200]}); nothing in this batch was "
                "deleted."
            ) from error
        return found & set(batch)


def load_reference_check(environ: Mapping[str, str] | None = None) -> ReferenceCheck | None:
    """The configured plug-in, or None when ``NOTIFY_REFERENCE_CHECK`` is unset."""
    environ = os.environ if environ is None else environ
    path = (environ.get(ENV) or "").strip()
    if not path:
        return None
    target = load_callable(path, setting=ENV, code="invalid_reference_check")
    return ReferenceCheck(target, path)
