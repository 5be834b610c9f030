"""The shared bucket registry: one entry per purpose, used by every task, the CLI and the tests.

Each entry says where the bucket's name comes from (env var, per-environment defaults), what its
keys look like, and its policy: encryption, lifecycle, retention and whether anything in it may
ever be deleted. Cleanup, ``buckets create``, ``buckets check`` and ``buckets policy`` all read
their rules from here, so a policy lives in exactly one place.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from storage.errors import ConfigurationError, InvalidInput

SSE = "AES256"  # the default; NOTIFY_S3_SSE=aws:kms switches every write to SSE-KMS
TEMP_LOGO_TAG = ("delete-after-7-days", "true")
# The admin app writes the tag by URL-encoding a Python bool, so it arrives as "True"; S3 matches
# tag values case-sensitively, so every rule that reads the tag covers both spellings.
TEMP_LOGO_TAG_VALUES = ("true", "True")


def is_temp_logo_tag(tags: Mapping[str, str]) -> bool:
    """Whether an object's tags mark it as a temporary logo, in either spelling."""
    return tags.get(TEMP_LOGO_TAG[0]) in TEMP_LOGO_TAG_VALUES


class CleanupRule(enum.StrEnum):
    """How the cleanup sweep decides that an object in this bucket may go."""

    PROTECTED = "protected"  # never deleted, whatever the flags
    AGE = "age"  # older than retention_days
    CSV_JOBS = "csv-jobs"  # age from the latest of upload / scheduled_for / finished; never pending
    REFERENCE = "reference"  # only when the reference check says nothing uses it any more
    TEMP_LOGO = "temp-logo"  # only temporary logos (file name starts `temp-`), by age
    REPORTS = "reports"  # reports by age; cleanup-audit/ logs by a longer age


@dataclass(frozen=True)
class BucketSpec:
    purpose: str
    env_var: str
    local_default: str
    development_default: str
    description: str
    key_layout: str
    cleanup: CleanupRule
    retention_days: int | None = None
    retention_env: str | None = None  # env var that overrides retention_days
    # Lifecycle rules `buckets create` installs (beyond aborting incomplete multipart uploads).
    expire_tagged_temp_logos: bool = False
    # Critical: losing an object would be serious, so the bucket is versioned (noncurrent
    # versions expire after NOTIFY_NONCURRENT_VERSION_DAYS; the current one never does).
    critical: bool = False
    # Objects are served to the public (read only, never listed): Block Public Access keeps
    # ACLs blocked but lets the bucket policy grant s3:GetObject to everyone.
    public_read: bool = False

    @property
    def protected(self) -> bool:
        return self.cleanup is CleanupRule.PROTECTED


REGISTRY: dict[str, BucketSpec] = {
    spec.purpose: spec
    for spec in (
        BucketSpec(
            "csv-upload",
            "S3_BUCKET_CSV_UPLOAD",
            "local-notifications-csv-upload",
            "development-notifications-csv-upload",
            "Recipient CSVs uploaded by services",
            "service-{service_id}-notify/{upload_id}.csv",
            CleanupRule.CSV_JOBS,
            retention_days=7,
            retention_env="NOTIFY_CSV_RETENTION_DAYS",
        ),
        BucketSpec(
            "contact-list",
            "S3_BUCKET_CONTACT_LIST_UPLOAD",
            "local-contact-list",
            "development-contact-list",
            "Saved contact lists (reused across jobs)",
            "service-{service_id}-notify/{upload_id}.csv",
            CleanupRule.REFERENCE,
        ),
        BucketSpec(
            "logo",
            "S3_BUCKET_LOGO_UPLOAD",
            "public-logos-local",
            "public-logos-tools",
            "Email and letter logos",
            "{filename} | letters/static/images/letter-template/{filename}",
            CleanupRule.TEMP_LOGO,
            retention_days=7,
            expire_tagged_temp_logos=True,
            public_read=True,
        ),
        BucketSpec(
            "mou",
            "S3_BUCKET_MOU",
            "local-mou",
            "notify.tools-mou",
            "Memorandum of understanding documents",
            "crown.pdf | non-crown.pdf",
            CleanupRule.PROTECTED,
            critical=True,
        ),
        BucketSpec(
            "transient-letters",
            "S3_BUCKET_TRANSIENT_UPLOADED_LETTERS",
            "local-transient-uploaded-letters",
            "development-transient-uploaded-letters",
            "Uploaded letter PDFs waiting to be moved",
            "service-{service_id}/{upload_id}.pdf",
            CleanupRule.AGE,
            retention_days=7,
            retention_env="NOTIFY_TRANSIENT_LETTER_RETENTION_DAYS",
        ),
        BucketSpec(
            "letter-backups",
            "S3_BUCKET_PRECOMPILED_ORIGINALS_BACKUP_LETTERS",
            "local-precompiled-originals-backup-letters",
            "development-letters-precompiled-originals-backup",
            "Originals of precompiled letters before sanitising",
            "{upload_id}.pdf",
            CleanupRule.PROTECTED,
            critical=True,
        ),
        BucketSpec(
            "letter-attachments",
            "S3_BUCKET_LETTER_ATTACHMENTS",
            "local-letter-attachments",
            "development-letter-attachments",
            "Letter attachments",
            "service-{service_id}/{upload_id}.pdf",
            CleanupRule.REFERENCE,
        ),
        BucketSpec(
            "report-downloads",
            "S3_BUCKET_REPORT_REQUESTS_DOWNLOAD",
            "local-report-requests-download",
            "development-report-requests-download",
            "Report exports, and the cleanup audit logs under cleanup-audit/",
            "{kind}_report/{report_request_id}.csv | cleanup-audit/{purpose}/...",
            CleanupRule.REPORTS,
            retention_days=7,
        ),
        BucketSpec(
            "email-attachments",
            "S3_BUCKET_TEMPLATE_EMAIL_FILES",
            "local-template-email-files",
            "development-template-email-files",
            "Files attached to email templates",
            "{service_id}/{template_email_file_id}",
            CleanupRule.REFERENCE,
        ),
        BucketSpec(
            "letters-pdf",
            "S3_BUCKET_LETTERS_PDF",
            "local-letters-pdf",
            "development-letters-pdf",
            "Letters ready to print (destination of moved transient letters)",
            "{YYYY-MM-DD}/NOTIFY.{REFERENCE}.D.{CLASS}.C.{YYYYMMDDHHMMSS}.PDF",
            CleanupRule.PROTECTED,
            critical=True,
        ),
    )
}

PURPOSES: tuple[str, ...] = tuple(REGISTRY)
AUDIT_LOG_PREFIX = "cleanup-audit/"
AUDIT_LOG_RETENTION_DAYS = 90
DEFAULTED_ENVIRONMENTS = ("local", "development", "test")


def spec(purpose: str) -> BucketSpec:
    """The registry entry for a purpose, or a clear error listing the known ones."""
    try:
        return REGISTRY[purpose]
    except KeyError:
        raise InvalidInput(
            f"Unknown bucket purpose {purpose!r}. Known purposes: {', '.join(PURPOSES)}.",
            code="unknown_bucket",
        ) from None


def default_name(bucket: BucketSpec, environment: str) -> str | None:
    if environment == "local":
        return bucket.local_default
    if environment == "development":
        return bucket.development_default
    if environment == "test":
        return f"test-{bucket.purpose}"
    return None


def resolve_bucket_names(environ: Mapping[str, str], environment: str) -> dict[str, str]:
    """Every purpose's bucket name for this environment; env vars win over defaults.

    Environments other than local/development/test have no defaults: every variable must be
    set, and the error names each one that is missing.
    """
    names: dict[str, str] = {}
    missing: list[str] = []
    for purpose, bucket in REGISTRY.items():
        name = (environ.get(bucket.env_var) or "").strip() or default_name(bucket, environment)
        if name:
            names[purpose] = name
        else:
            missing.append(bucket.env_var)
    if missing:
        raise ConfigurationError(
            f"NOTIFY_ENVIRONMENT={environment!r} has no default bucket names, and these "
            f"variables are not set: {', '.join(missing)}. Set each to its bucket's name "
            "(see docs/configuration.md).",
            code="missing_bucket_variable",
        )
    return names
