"""Checks for report params: every kind refuses bad params before any S3 call.

Params arrive as a JSON object (from the web app) or as ``k=v`` strings (from the CLI), so the
checks accept strings for every value. Every refusal is ``InvalidInput`` with code
``invalid_params`` and says which param and why.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from storage.errors import InvalidInput
from storage.keys import parse_timestamp, require_uuid

INVALID_PARAMS = "invalid_params"


def refuse(message: str) -> InvalidInput:
    return InvalidInput(message, code=INVALID_PARAMS)


def require_mapping(params: object) -> dict[str, Any]:
    """Params must be a JSON object with string names."""
    if params is None:
        return {}
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise refuse("params must be a JSON object of named values.")
    return dict(params)


def only(
    kind: str,
    params: Mapping[str, Any],
    *,
    required: Collection[str] = (),
    optional: Collection[str] = (),
) -> None:
    """Refuse unknown names (typos would otherwise be silently ignored) and missing ones."""
    allowed = set(required) | set(optional)
    unknown = sorted(set(params) - allowed)
    if unknown:
        accepted = ", ".join(sorted(allowed)) or "none"
        raise refuse(f"The {kind} report does not take {', '.join(unknown)}; it takes: {accepted}.")
    missing = [name for name in required if params.get(name) in (None, "")]
    if missing:
        raise refuse(f"The {kind} report needs {', '.join(missing)}.")


def uuid_param(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        return require_uuid(value, name)
    except InvalidInput as error:
        raise refuse(error.message) from None


def timestamp_param(params: Mapping[str, Any], name: str) -> datetime | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        return parse_timestamp(value, name)
    except InvalidInput as error:
        raise refuse(error.message) from None
