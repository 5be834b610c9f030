"""``job-outcome``: one line per row of a CSV job, in row order, from the CSV workflow's record.

Rows come from ``tasks.csv_batches.row_outcomes.iter_row_outcomes(service_id, upload_id, source=)``,
which raises ``InvalidInput`` (``job_not_found``, ``job_failed``...) at once for a job it cannot
report. The params name only the upload: the job's bucket (csv-upload or contact-list) is found
from its state or its object. Another service's upload is not found.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from storage.errors import InvalidInput
from tasks.reports.params import only, uuid_param
from tasks.reports.sources import csv_jobs

KIND = "job-outcome"
COLUMNS = (
    "row_number",
    "recipient",
    "status",
    "error_code",
    "error_message",
    "notification_id",
)


def check_params(params: Mapping[str, Any]) -> dict[str, str]:
    only(KIND, params, required=("upload_id",))
    return {"upload_id": uuid_param(params, "upload_id")}


def source(service_id: str, params: Mapping[str, Any]) -> tuple[tuple[str, ...], Iterator[list]]:
    # Imported here: the CSV workflow's validation stack is only needed for this kind.
    from tasks.csv_batches.row_outcomes import iter_row_outcomes

    upload_id = check_params(params)["upload_id"]
    csv_source = csv_jobs.job_source(service_id, upload_id)
    if csv_source is None:
        raise InvalidInput(
            f"No CSV job {upload_id} for service {service_id}: nothing to report.",
            code="job_not_found",
        )
    # Raises job_not_found / job_failed at once (a job still running, say), before any write.
    return COLUMNS, _rows(iter_row_outcomes(service_id, upload_id, source=csv_source))


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
