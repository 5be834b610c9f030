"""``job-outcome``: one line per row of a CSV job, in row order, from the CSV workflow's record.

Rows come from ``tasks.csv_batches.outcomes.iter_row_outcomes(service_id, upload_id, source=)``,
which raises ``InvalidInput`` (``job_not_found``) for a job it does not know. The params name
only the upload, so both CSV sources are tried (csv-upload first, then contact-list). The first
row is read before returning, so a missing job fails before anything is written.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from itertools import chain
from typing import Any

from storage.errors import ConfigurationError, InvalidInput
from tasks.reports.params import only, uuid_param

KIND = "job-outcome"
COLUMNS = (
    "row_number",
    "recipient",
    "status",
    "error_code",
    "error_message",
    "notification_id",
)
CSV_SOURCES = ("csv-upload", "contact-list")
OUTCOMES_MODULE = "tasks.csv_batches.outcomes"
_END = object()


def check_params(params: Mapping[str, Any]) -> dict[str, str]:
    only(KIND, params, required=("upload_id",))
    return {"upload_id": uuid_param(params, "upload_id")}


def _iter_row_outcomes() -> Any:
    try:
        module = importlib.import_module(OUTCOMES_MODULE)
    except ImportError:
        raise ConfigurationError(
            f"The job-outcome report needs {OUTCOMES_MODULE}, which is not installed.",
            code="unavailable_kind",
        ) from None
    return module.iter_row_outcomes


def source(service_id: str, params: Mapping[str, Any]) -> tuple[tuple[str, ...], Iterator[list]]:
    upload_id = check_params(params)["upload_id"]
    iter_row_outcomes = _iter_row_outcomes()
    for csv_source in CSV_SOURCES:
        outcomes = iter(iter_row_outcomes(service_id, upload_id, source=csv_source))
        try:
            first = next(outcomes, _END)
        except InvalidInput as error:
            if error.code == "job_not_found":
                continue
            raise
        rows = outcomes if first is _END else chain([first], outcomes)
        return COLUMNS, _rows(rows)
    raise InvalidInput(
        f"No CSV job {upload_id} for service {service_id}: nothing to report.",
        code="job_not_found",
    )


def _rows(outcomes: Iterator[Any]) -> Iterator[list]:
    for o in outcomes:
        yield [
            o.row_number,
            o.recipient,
            o.status,
            o.error_code,
            o.error_message,
            o.notification_id,
        ]
