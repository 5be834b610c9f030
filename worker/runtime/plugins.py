"""Loading plug-ins named by dotted path in settings (report sources, the reference check)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from storage.errors import ConfigurationError


def load_callable(path: str, *, setting: str, code: str = "invalid_setting") -> Callable[..., Any]:
    """Import ``package.module:attribute`` (or ``package.module.attribute``) and check that it
    is callable; any problem is a ``ConfigurationError`` naming the setting."""
    module_name, sep, attribute = path.partition(":")
    if not sep:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"{setting}: {path!r} is not a dotted path; write package.module:callable.",
            code=code,
        )
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as error:
        raise ConfigurationError(
            f"{setting}: cannot load {path!r} ({type(error).__name__}: {error}).", code=code
        ) from None
    if not callable(found):
        raise ConfigurationError(f"{setting}: {path!r} is not callable.", code=code)
    return found
