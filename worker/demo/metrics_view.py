"""What the demo prints about its worker's metrics: a real scrape of its exporter."""

from __future__ import annotations

import urllib.request
from collections import defaultdict


def scrape(url: str, timeout: float = 10) -> dict[str, dict[tuple, float]]:
    """Samples by name, then by their labels (sorted (name, value) pairs)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - our own URL
        text = answer.read().decode()
    found: dict[str, dict[tuple, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return found


def summary_lines(url: str) -> list[str]:
    """A few figures an operator would look at first, from one scrape."""
    found = scrape(url)

    def total(name: str, **labels: str) -> int:
        return int(
            sum(
                value
                for found_labels, value in found.get(name, {}).items()
                if all((k, v) in found_labels for k, v in labels.items())
            )
        )

    deleted = found.get("notify_cleanup_objects_deleted_total", {})
    by_purpose = ", ".join(
        f"{dict(labels)['purpose']} {int(value)}" for labels, value in sorted(deleted.items())
    )
    s3_errors = total("notify_s3_requests_total") - total("notify_s3_requests_total", outcome="ok")
    return [
        f"CSV rows dispatched {total('notify_csv_rows_total', result='dispatched')}, "
        f"invalid {total('notify_csv_rows_total', result='invalid')}",
        f"letters moved {total('notify_letters_moved_total')}",
        f"objects deleted {total('notify_cleanup_objects_deleted_total')}"
        + (f" ({by_purpose})" if by_purpose else ""),
        f"report rows {total('notify_report_rows_total')}",
        f"tasks ok {total('notify_tasks_total', status='ok')}, "
        f"skipped {total('notify_tasks_total', status='skipped')}, "
        f"failed {total('notify_tasks_total', status='failed')}",
        f"S3 requests {total('notify_s3_requests_total')} ({s3_errors} answered with an error "
        "code: not-found answers the workflows expect are among them)",
    ]
