"""Report sources for tests, registered through NOTIFY_REPORT_SOURCES like any plug-in.

    NOTIFY_REPORT_SOURCES=synthetic=tests.plugins.report_sources:synthetic,...

Each is ``(service_id, params) -> (header, rows)``; ``synthetic`` also shows the optional
``check_params`` hook. Params arrive as JSON values or CLI strings, hence the ``int()`` calls.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from storage.errors import InvalidInput
from storage.objects import put_bytes
from storage.settings import get_settings

HEADER = ("n", "name", "note")
DANGEROUS = ("=1+1", "+44 7700 900123", "-2", "@SUM(A1)", "\tx", "\rx", "ok", "", "a=b")

SOURCES = ",".join(
    f"{kind}=tests.plugins.report_sources:{name}"
    for kind, name in (
        ("synthetic", "synthetic"),
        ("dangerous", "dangerous"),
        ("failing", "failing"),
        ("racing", "racing"),
        ("abort-midway", "abort_midway"),
        ("slow", "slow"),
        ("ragged", "ragged"),
    )
)


def _int(params: Mapping[str, Any], name: str, default: int) -> int:
    try:
        value = int(params.get(name, default))
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a whole number.", code="invalid_params") from None
    if value < 0:
        raise InvalidInput(f"{name} must not be negative.", code="invalid_params")
    return value


def _check_synthetic(params: Mapping[str, Any]) -> Mapping[str, Any]:
    unknown = set(params) - {"rows"}
    if unknown:
        message = f"synthetic takes only rows, not {sorted(unknown)}."
        raise InvalidInput(message, code="invalid_params")
    return {"rows": _int(params, "rows", 10)}


def row(n: int) -> tuple[int, str, str]:
    return (n, f"name-{n}", "x" * 40)


def synthetic(service_id: str, params: Mapping[str, Any]) -> tuple[tuple, Iterator]:
    count = _int(params, "rows", 10)
    return HEADER, (row(n) for n in range(1, count + 1))


synthetic.check_params = _check_synthetic  # type: ignore[attr-defined]


def dangerous(service_id: str, params: Mapping[str, Any]) -> tuple[tuple, Iterator]:
    """Every cell shape that must be neutralised, in every column, header included."""
    return ("=header", "name", "note"), ((v, v, f"{v}!") for v in DANGEROUS)


def failing(service_id: str, params: Mapping[str, Any]) -> tuple[tuple, Iterator]:
    after = _int(params, "after", 100)

    def rows() -> Iterator[tuple]:
        for n in range(1, after + 1):
            yield row(n)
        raise RuntimeError("the source broke half-way")

    return HEADER, rows()


def _report_bucket() -> str:
    return get_settings().bucket("report-downloads")


def racing(service_id: str, params: Mapping[str, Any]) -> tuple[tuple, Iterator]:
    """Another run finishes the same report while this one streams (after the HEAD check)."""
    count, at, key = _int(params, "rows", 10), _int(params, "at", 1), params["key"]

    def rows() -> Iterator[tuple]:
        for n in range(1, count + 1):
            if n == at:
                put_bytes(_report_bucket(), key, b"n,name,note\r\nwinner,,\r\n")
            yield row(n)

    return HEADER, rows()


def abort_midway(service_id: str, params: Mapping[str, Any]) -> tuple[tuple, Iterator]:
    """A real S3 fault half-way: the upload disappears, so the next part upload fails."""
    from storage.client import get_client
    from storage.listing import iter_multipart_uploads

    count, key = _int(params, "rows", 10), params["key"]

    def rows() -> Iterator[tuple]:
        aborted = False
        for n in range(1, count + 1):
            if not aborted:
                for upload in iter_multipart_uploads(_report_bucket(), key):
                    get_client().abort_multipart_upload(
                        Bucket=_report_bucket(), Key=key, UploadId=upload.upload_id
                    )
                    aborted = True
            yield row(n)

    return HEADER, rows()


def slow(service_id: str, params: Mapping[str, Any]) -> tuple[tuple, Iterator]:
    count = _int(params, "rows", 100)
    delay = float(params.get("delay", 0.01))

    def rows() -> Iterator[tuple]:
        for n in range(1, count + 1):
            time.sleep(delay)
            yield row(n)

    return HEADER, rows()


def ragged(service_id: str, params: Mapping[str, Any]) -> tuple[tuple, Iterator]:
    return HEADER, iter([row(1), (2, "too short")])
