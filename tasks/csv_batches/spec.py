"""A CSV job's parameters: checked once, carried as one value, serialised as compact JSON.

The same ``JobSpec`` comes from the task's keyword arguments, from the Redis job state (to
resume or release a job) and from the object's metadata (to rebuild a lost schedule, or to
re-run the validation for the ``job-outcome`` report).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from storage.errors import InvalidInput
from storage.keys import csv_upload_key, require_uuid
from storage.settings import get_settings
from tasks.csv_batches.validation.columns import TEMPLATE_TYPES

SOURCES = ("csv-upload", "contact-list")
OPTION_NAMES = (
    "allow_international_sms",
    "allow_international_letters",
    "allow_sms_to_uk_landline",
)
MAX_PLACEHOLDERS = 1000
MAX_PLACEHOLDER_LENGTH = 500


@dataclass(frozen=True)
class JobSpec:
    service_id: str
    upload_id: str
    template_id: str
    template_type: str
    placeholders: tuple[str, ...]
    allow_international_sms: bool = False
    allow_international_letters: bool = False
    allow_sms_to_uk_landline: bool = False
    sender_id: str | None = None
    source: str = "csv-upload"

    @classmethod
    def from_kwargs(
        cls,
        *,
        service_id: Any,
        upload_id: Any,
        template: Any,
        options: Any = None,
        sender_id: Any = None,
        source: Any = "csv-upload",
    ) -> JobSpec:
        """Check the task's arguments (docs/tasks.md); raises ``InvalidInput`` before any S3
        call."""
        require_uuid(service_id, "service_id")
        require_uuid(upload_id, "upload_id")
        if not isinstance(template, Mapping):
            raise InvalidInput(
                "template must be an object {id, type, placeholders}.", code="invalid_template"
            )
        template_id = require_uuid(template.get("id"), "template.id")
        template_type = template.get("type")
        if template_type not in TEMPLATE_TYPES:
            raise InvalidInput(
                f"template.type must be one of {', '.join(TEMPLATE_TYPES)}.",
                code="invalid_template",
            )
        placeholders = template.get("placeholders") or []
        if (
            not isinstance(placeholders, list | tuple)
            or len(placeholders) > MAX_PLACEHOLDERS
            or not all(
                isinstance(p, str) and 0 < len(p) <= MAX_PLACEHOLDER_LENGTH for p in placeholders
            )
        ):
            raise InvalidInput(
                "template.placeholders must be a list of placeholder names.",
                code="invalid_template",
            )
        options = {} if options is None else options
        if not isinstance(options, Mapping):
            raise InvalidInput("options must be an object.", code="invalid_options")
        unknown = set(options) - set(OPTION_NAMES)
        if unknown:
            raise InvalidInput(
                f"unknown options: {', '.join(sorted(map(str, unknown)))}.", code="invalid_options"
            )
        flags = {name: options.get(name, False) for name in OPTION_NAMES}
        if not all(isinstance(v, bool) for v in flags.values()):
            raise InvalidInput("options must be true or false.", code="invalid_options")
        if sender_id is not None:
            require_uuid(sender_id, "sender_id")
        source = source or "csv-upload"
        if source not in SOURCES:
            raise InvalidInput(
                f"source must be one of {', '.join(SOURCES)}.", code="invalid_source"
            )
        return cls(
            service_id=service_id,
            upload_id=upload_id,
            template_id=template_id,
            template_type=template_type,
            placeholders=tuple(placeholders),
            sender_id=sender_id,
            source=source,
            **flags,
        )

    @classmethod
    def from_params(cls, service_id: str, upload_id: str, params: Mapping[str, Any]) -> JobSpec:
        """From the ``params`` recorded in Redis or in the object's metadata."""
        return cls.from_kwargs(
            service_id=service_id,
            upload_id=upload_id,
            template=params.get("template"),
            options=params.get("options"),
            sender_id=params.get("sender_id"),
            source=params.get("source", "csv-upload"),
        )

    # --- derived ---------------------------------------------------------------------------

    @property
    def bucket(self) -> str:
        return get_settings().bucket(self.source)

    @property
    def key(self) -> str:
        return csv_upload_key(self.service_id, self.upload_id)

    @property
    def options(self) -> dict[str, bool]:
        return {name: getattr(self, name) for name in OPTION_NAMES}

    def row_checker(self, layout: Any) -> Any:
        """``layout.check_row`` with this job's options bound (only those that are true: the
        defaults are false, and a call without keyword arguments is cheaper)."""
        enabled = {name: True for name, value in self.options.items() if value}
        return functools.partial(layout.check_row, **enabled) if enabled else layout.check_row

    def params(self) -> dict[str, Any]:
        """Everything but the ids, JSON-ready (kept in Redis and in the object's metadata)."""
        params: dict[str, Any] = {
            "template": {
                "id": self.template_id,
                "type": self.template_type,
                "placeholders": list(self.placeholders),
            },
            "options": self.options,
            "source": self.source,
        }
        if self.sender_id:
            params["sender_id"] = self.sender_id
        return params

    def params_json(self) -> str:
        # ASCII only: S3 metadata travels in HTTP headers.
        return json.dumps(self.params(), separators=(",", ":"), ensure_ascii=True)

    def task_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``notify.csv.process_batch`` for this job (no schedule)."""
        return {"service_id": self.service_id, "upload_id": self.upload_id, **self.params()}
