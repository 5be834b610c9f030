"""The registry of report kinds: the four built-ins and plug-ins named in ``NOTIFY_REPORT_SOURCES``.

A kind is a source — ``(service_id, params) -> (header, rows_iterator)`` — plus a params check
that runs before any S3 call. Plug-ins are configured as a comma-separated list::

    NOTIFY_REPORT_SOURCES="letters-sent=myservice.reports:letters_sent,audit=pkg.mod:Audit.rows"

Each entry is ``kind=module:attribute`` (``module.attribute`` also works). The kind name must be
lower-case words joined by ``-`` and may not shadow a built-in. A plug-in callable may carry a
``check_params`` attribute, ``(params) -> params``, raising ``InvalidInput`` for bad params; it
runs before any S3 call. See docs/reports.md for the whole interface.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from storage.errors import ConfigurationError, InvalidInput
from storage.keys import require_kind
from tasks.reports.params import require_mapping
from tasks.reports.settings import report_settings
from tasks.reports.sources import job_outcome, notifications, storage_usage, uploads
from worker.runtime.plugins import load_callable

logger = logging.getLogger(__name__)

Rows = Iterable[Sequence[Any]]
Source = Callable[[str, Mapping[str, Any]], tuple[Sequence[str], Rows]]
ParamsCheck = Callable[[Mapping[str, Any]], Mapping[str, Any]]
SOURCES_VAR = "NOTIFY_REPORT_SOURCES"


@dataclass(frozen=True)
class Kind:
    name: str
    source: Source
    check_params: ParamsCheck | None = None
    builtin: bool = False

    def checked_params(self, params: object) -> dict[str, Any]:
        """Params as a plain dict, refused with ``invalid_params`` when they do not fit."""
        plain = require_mapping(params)
        if self.check_params is None:
            return plain
        return dict(self.check_params(plain))


BUILTINS: dict[str, Kind] = {
    module.KIND: Kind(module.KIND, module.source, module.check_params, builtin=True)
    for module in (job_outcome, uploads, storage_usage, notifications)
}

_lock = threading.Lock()
_loaded: dict[str, dict[str, Kind]] = {}


def _resolve(kind: str, target: str) -> Source:
    return load_callable(target, setting=f"{SOURCES_VAR} (kind {kind!r})")


def parse_sources(spec: str) -> dict[str, Kind]:
    """Plug-in kinds from the ``NOTIFY_REPORT_SOURCES`` format (imports each callable)."""
    plugins: dict[str, Kind] = {}
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        name, sep, target = (part.strip() for part in entry.partition("="))
        if not sep or not target:
            raise ConfigurationError(
                f"{SOURCES_VAR}: {entry!r} should look like kind=package.module:callable.",
                code="invalid_setting",
            )
        try:
            require_kind(name)
        except InvalidInput as error:
            raise ConfigurationError(
                f"{SOURCES_VAR}: {error.message}", code="invalid_setting"
            ) from None
        if name in BUILTINS:
            raise ConfigurationError(
                f"{SOURCES_VAR}: {name!r} is a built-in kind and cannot be replaced.",
                code="invalid_setting",
            )
        if name in plugins:
            raise ConfigurationError(
                f"{SOURCES_VAR}: kind {name!r} is listed twice.", code="invalid_setting"
            )
        source = _resolve(name, target)
        plugins[name] = Kind(name, source, getattr(source, "check_params", None))
    return plugins


def registry(spec: str | None = None) -> dict[str, Kind]:
    """Every kind: built-ins plus the configured plug-ins (loaded once per distinct setting)."""
    if spec is None:
        spec = report_settings().sources
    plugins = _loaded.get(spec)
    if plugins is None:
        with _lock:
            plugins = _loaded.get(spec)
            if plugins is None:
                plugins = _loaded[spec] = parse_sources(spec)
    return {**BUILTINS, **plugins}


def get_kind(name: object) -> Kind:
    """The registered kind called ``name``, or ``InvalidInput`` (``unknown_kind``)."""
    kinds = registry()
    if not isinstance(name, str) or name not in kinds:
        shown = name if isinstance(name, str) and len(name) <= 64 else type(name).__name__
        raise InvalidInput(
            f"Unknown report kind {shown!r}. Known kinds: {', '.join(sorted(kinds))}.",
            code="unknown_kind",
        )
    return kinds[name]
