"""Settings of the letters workflow, read from the environment as one explicit object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from storage.copies import COPY_PART_SIZE, MAX_SINGLE_COPY
from storage.errors import ConfigurationError
from storage.settings import StorageSettings, env_int, get_settings
from worker.runtime.settings import get_worker_settings

MULTIPART_THRESHOLD_ENV = "NOTIFY_LETTER_MULTIPART_THRESHOLD_BYTES"
COPY_PART_SIZE_ENV = "NOTIFY_LETTER_COPY_PART_BYTES"


@dataclass(frozen=True)
class LetterSettings:
    transient_bucket: str
    letters_bucket: str
    backup_bucket: str
    # Letters above this size are copied part by part (CopyObject stops at 5 GiB).
    multipart_threshold: int = MAX_SINGLE_COPY
    copy_part_size: int = COPY_PART_SIZE
    alert_hours: int = 24

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        storage: StorageSettings | None = None,
    ) -> LetterSettings:
        env = os.environ if environ is None else environ
        storage = storage or get_settings()
        threshold = env_int(env, MULTIPART_THRESHOLD_ENV, MAX_SINGLE_COPY, minimum=1)
        if threshold > MAX_SINGLE_COPY:
            raise ConfigurationError(
                f"{MULTIPART_THRESHOLD_ENV} must be at most {MAX_SINGLE_COPY} (5 GiB, the "
                f"largest object one CopyObject can copy), got {threshold}."
            )
        return cls(
            transient_bucket=storage.bucket("transient-letters"),
            letters_bucket=storage.bucket("letters-pdf"),
            backup_bucket=storage.bucket("letter-backups"),
            multipart_threshold=threshold,
            copy_part_size=env_int(env, COPY_PART_SIZE_ENV, COPY_PART_SIZE, minimum=1),
            alert_hours=get_worker_settings().transient_letter_alert_hours,
        )
