"""A faster decoder for kombu's ``json`` serializer (msgspec), giving exactly what kombu's gives.

Every task message body is decoded twice: once by the worker's main process (Celery builds
each request's arguments there) and once by the pool child that runs it. A sink batch is a
thousand rows, so with the standard library's parser and kombu's ``object_hook`` (a Python
call for every object, looking for kombu's type markers) decoding is the largest single cost of
storing a row (docs/benchmarks.md has the figures). msgspec parses the same text in C at about
twice the speed with no per-object call, and, unlike orjson, keeps integers of any size exact.

The result must be the one kombu's own ``loads`` gives, whoever sent the message, so msgspec is
used only when it cannot differ:

* text that may hold a kombu type marker (the ``__type__`` key kombu's encoder writes for
  dates, UUIDs, decimals...) or any ``\\u`` escape (which could spell one) goes to kombu;
* anything msgspec refuses where the standard parser might not (NaN and Infinity, numbers out
  of a float's range, lone surrogates, very deep nesting, text that is not UTF-8) goes to
  kombu, which decodes it or raises its own error.

Only the decoder changes; the encoder stays kombu's. ``install()`` is called when the Celery
app is made, so the worker's main process, its pool children and every sender use it.
"""

from __future__ import annotations

from typing import Any

import msgspec
from kombu.serialization import registry
from kombu.utils import json as kombu_json

CONTENT_TYPE = "application/json"
_MARKERS_BYTES = (b"__type__", b"\\u")
_MARKERS_TEXT = ("__type__", "\\u")
_decode = msgspec.json.Decoder().decode


def loads(data: Any) -> Any:
    """Decode a JSON message body as ``kombu.utils.json.loads`` does."""
    if isinstance(data, memoryview | bytearray):
        data = bytes(data)
    if isinstance(data, bytes):
        markers: tuple[Any, ...] = _MARKERS_BYTES
    elif isinstance(data, str):
        markers = _MARKERS_TEXT
    else:
        return kombu_json.loads(data)
    if markers[0] in data or markers[1] in data:
        return kombu_json.loads(data)
    try:
        return _decode(data)
    except (msgspec.MsgspecError, RecursionError):
        return kombu_json.loads(data)


def install() -> None:
    """Make ``loads`` the decoder of kombu's ``json`` serializer (idempotent)."""
    registry.register(
        "json", kombu_json.dumps, loads, content_type=CONTENT_TYPE, content_encoding="utf-8"
    )
