"""Settings of the reports workflow, read from the environment on each call.

Reading per call (it is a handful of ``os.environ`` lookups) keeps tests and the CLI free of
reload dances: what the environment says when a report starts is what that report uses.

* ``NOTIFY_REPORT_PART_SIZE`` (default 8 MiB): multipart part size; at least 5 MiB, except
  when ``NOTIFY_ENVIRONMENT=test`` (moto is told to accept 1 KiB parts there);
* ``NOTIFY_REPORT_SOURCES`` (default empty): plug-in kinds, ``kind=package.module:callable``,
  comma-separated (see ``tasks.reports.kinds``);
* ``NOTIFY_REPORT_PROGRESS_EVERY`` (default 10000): rows between progress reports;
* ``NOTIFY_REPORT_EXPIRY_DAYS`` (default: the registry's retention, 7): the ``expire-after-days``
  tag.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from storage.buckets import spec
from storage.errors import ConfigurationError
from storage.settings import env_int
from storage.upload import DEFAULT_PART_SIZE, MIN_PART_SIZE

# Below S3's floor only for tests (moto is told to accept 1 KiB parts there).
_TEST_MIN_PART_SIZE = 1024


@dataclass(frozen=True)
class ReportSettings:
    part_size: int
    sources: str
    progress_every: int
    expiry_days: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReportSettings:
        env = os.environ if environ is None else environ
        testing = (env.get("NOTIFY_ENVIRONMENT") or "").strip().lower() == "test"
        floor = _TEST_MIN_PART_SIZE if testing else MIN_PART_SIZE
        part_size = env_int(env, "NOTIFY_REPORT_PART_SIZE", DEFAULT_PART_SIZE, minimum=1)
        if part_size < floor:
            raise ConfigurationError(
                f"NOTIFY_REPORT_PART_SIZE must be at least {floor} bytes (S3 refuses smaller "
                f"parts), got {part_size}.",
                code="invalid_setting",
            )
        retention = spec("report-downloads").retention_days or 7
        return cls(
            part_size=part_size,
            sources=(env.get("NOTIFY_REPORT_SOURCES") or "").strip(),
            progress_every=env_int(env, "NOTIFY_REPORT_PROGRESS_EVERY", 10_000, minimum=1),
            expiry_days=env_int(env, "NOTIFY_REPORT_EXPIRY_DAYS", retention, minimum=1),
        )


def report_settings() -> ReportSettings:
    return ReportSettings.from_env()
