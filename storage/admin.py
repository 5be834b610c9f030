"""Bucket administration: create, check and describe the registry's buckets.

``check_buckets`` returns every problem it finds, each with its cause and fix, in the words of
the service's troubleshooting guide (no credentials, access denied, no such bucket, wrong region).
moto never answers PermanentRedirect, so a wrong region is also caught by comparing
GetBucketLocation with ``AWS_REGION``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from storage.buckets import REGISTRY, SSE, TEMP_LOGO_TAG, BucketSpec
from storage.client import get_client
from storage.errors import NotifyError, s3_errors
from storage.settings import StorageSettings, get_settings

ABORT_INCOMPLETE_UPLOADS_DAYS = 1
TEMP_LOGO_EXPIRY_DAYS = 7


def lifecycle_rules(bucket: BucketSpec) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        {
            "ID": "abort-incomplete-multipart-uploads",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {
                "DaysAfterInitiation": ABORT_INCOMPLETE_UPLOADS_DAYS
            },
        }
    ]
    if bucket.expire_tagged_temp_logos:
        rules.append(
            {
                "ID": "expire-temporary-logos",
                "Status": "Enabled",
                "Filter": {"Tag": {"Key": TEMP_LOGO_TAG[0], "Value": TEMP_LOGO_TAG[1]}},
                "Expiration": {"Days": TEMP_LOGO_EXPIRY_DAYS},
            }
        )
    return rules


def create_buckets(settings: StorageSettings | None = None, *, client: Any = None) -> list[str]:
    """Create every bucket (idempotent), with default AES256 encryption and lifecycle rules."""
    settings = settings or get_settings()
    client = client or get_client()
    done = []
    for purpose, bucket in REGISTRY.items():
        name = settings.bucket(purpose)
        with s3_errors(name):
            params: dict[str, Any] = {"Bucket": name}
            if settings.region != "us-east-1":
                params["CreateBucketConfiguration"] = {"LocationConstraint": settings.region}
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(**params)
            client.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": SSE}}]
                },
            )
            client.put_bucket_lifecycle_configuration(
                Bucket=name, LifecycleConfiguration={"Rules": lifecycle_rules(bucket)}
            )
        done.append(name)
    return done


@dataclass(frozen=True)
class Problem:
    purpose: str | None
    bucket: str | None
    what: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.purpose} ({self.bucket})" if self.purpose else "setup"
        return f"{where}: {self.what}\n    fix: {self.fix}"


@dataclass(frozen=True)
class CheckResult:
    checked: list[str]
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def _problem(purpose: str, name: str, error: NotifyError) -> Problem:
    what, _, fix = error.message.partition(" Fix: ")
    return Problem(purpose, name, what, fix or "see the README's troubleshooting section")


def check_buckets(settings: StorageSettings | None = None, *, client: Any = None) -> CheckResult:
    """Credentials, region, existence, encryption and lifecycle of every bucket."""
    settings = settings or get_settings()
    client = client or get_client()
    problems: list[Problem] = []
    checked: list[str] = []
    for purpose, bucket in REGISTRY.items():
        name = settings.bucket(purpose)
        checked.append(name)
        try:
            with s3_errors(name):
                location = client.get_bucket_location(Bucket=name).get("LocationConstraint")
        except NotifyError as error:
            problems.append(_problem(purpose, name, error))
            if error.code == "s3_no_credentials":
                break  # every other bucket would say the same
            continue
        region = location or "us-east-1"
        if region == "EU":
            region = "eu-west-1"
        if region != settings.region:
            problems.append(
                Problem(
                    purpose,
                    name,
                    f"bucket is in {region} but AWS_REGION is {settings.region} "
                    "(S3 would answer PermanentRedirect)",
                    f"set AWS_REGION={region}, or set {bucket.env_var} to a bucket in "
                    f"{settings.region}",
                )
            )
        problems.extend(_check_encryption(client, purpose, name))
        problems.extend(_check_lifecycle(client, purpose, name, bucket))
    return CheckResult(checked, problems)


def _check_encryption(client: Any, purpose: str, name: str) -> list[Problem]:
    try:
        with s3_errors(name):
            config = client.get_bucket_encryption(Bucket=name)
    except NotifyError as error:
        if error.code != "s3_error":  # plain s3_error: no encryption configured
            return [_problem(purpose, name, error)]
        config = {}
    rules = config.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    algorithms = {
        r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules
    }
    if not algorithms & {SSE, "aws:kms", "aws:kms:dsse"}:
        return [
            Problem(
                purpose,
                name,
                "no default encryption",
                "run `notify-worker buckets create` (it sets AES256 default encryption)",
            )
        ]
    return []


def _check_lifecycle(client: Any, purpose: str, name: str, bucket: BucketSpec) -> list[Problem]:
    try:
        with s3_errors(name):
            rules = client.get_bucket_lifecycle_configuration(Bucket=name).get("Rules", [])
    except NotifyError as error:
        if error.code != "s3_error":  # plain s3_error: no lifecycle configured
            return [_problem(purpose, name, error)]
        rules = []
    enabled = [r for r in rules if r.get("Status") == "Enabled"]
    problems = []
    if not any("AbortIncompleteMultipartUpload" in r for r in enabled):
        problems.append(
            Problem(
                purpose,
                name,
                "no lifecycle rule aborting incomplete multipart uploads",
                "run `notify-worker buckets create` (adds a 1-day abort rule)",
            )
        )
    if bucket.expire_tagged_temp_logos and not any(
        r.get("Filter", {}).get("Tag", {}).get("Key") == TEMP_LOGO_TAG[0] and "Expiration" in r
        for r in enabled
    ):
        problems.append(
            Problem(
                purpose,
                name,
                f"no lifecycle rule expiring logos tagged {TEMP_LOGO_TAG[0]}={TEMP_LOGO_TAG[1]}",
                "run `notify-worker buckets create` (adds the 7-day temporary-logo rule)",
            )
        )
    return problems


# --- least-privilege IAM policy -----------------------------------------------------------------
#
# IAM facts this relies on: HEAD is authorised by s3:GetObject (there is no s3:HeadObject action);
# without s3:ListBucket a missing key reads as 403 instead of 404; CopyObject needs s3:GetObject
# (and s3:GetObjectTagging, as tags are copied) on the source and s3:PutObject (and
# s3:PutObjectTagging) on the destination; multipart uploads and UploadPartCopy are s3:PutObject,
# except aborting them; DeleteObjects is s3:DeleteObject for each key.

_READ = ("s3:GetObject", "s3:GetObjectTagging")
_WRITE = ("s3:PutObject", "s3:PutObjectTagging")
_DELETE = ("s3:DeleteObject",)
# Cleanup aborts stale incomplete multipart uploads in every bucket, protected ones included
# (aborting an upload deletes no object).
_ABORT = ("s3:AbortMultipartUpload",)
# On the bucket itself: listing (cleanup, reports, the transient-letters sweep, and 404s), the
# multipart-upload listing (cleanup), and what `buckets check` reads, so an operator can check a
# deployment with the workers' own credentials.
_BUCKET = (
    "s3:GetBucketLocation",
    "s3:GetEncryptionConfiguration",
    "s3:GetLifecycleConfiguration",
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
)
# What the workflows do to the objects of each purpose (SPEC sections 3-7).
_OBJECT_USE: dict[str, tuple[str, ...]] = {
    # read and streamed; outcome and schedule metadata rewritten by a copy onto itself; cleanup
    "csv-upload": _READ + _WRITE + _DELETE,
    "contact-list": _READ + _WRITE + _DELETE,
    # cleanup of temporary logos only, decided from the listing (key name and age)
    "logo": _DELETE,
    # protected, and never read by the workers
    "mou": (),
    # read (HEAD, copy source), deleted once moved, and by cleanup; never written
    "transient-letters": _READ + _DELETE,
    # backups are written (copy destination) and checked with a HEAD; never deleted
    "letter-backups": _READ + _WRITE,
    # cleanup only, when the reference check says the object is gone
    "letter-attachments": _DELETE,
    # reports written (multipart, tags), an existing one read; audit logs written; cleanup
    "report-downloads": _READ + _WRITE + _DELETE,
    "email-attachments": _DELETE,
    # moved letters written (copy destination) and checked with a HEAD; never deleted
    "letters-pdf": _READ + _WRITE,
}


def object_actions(bucket: BucketSpec) -> list[str]:
    """The IAM actions the workers need on this bucket's objects (``/*``)."""
    try:
        use = _OBJECT_USE[bucket.purpose]
    except KeyError:
        raise NotifyError(
            f"No IAM object actions are declared for purpose {bucket.purpose!r}; add it to "
            "storage.admin._OBJECT_USE.",
            code="policy_incomplete",
        ) from None
    if bucket.protected:
        use = tuple(a for a in use if a not in _DELETE)  # protected: never, whatever the table
    return sorted({*use, *_ABORT})


def iam_policy(settings: StorageSettings | None = None) -> dict[str, Any]:
    """The least-privilege policy for the configured buckets, and nothing else."""
    settings = settings or get_settings()
    statements = []
    for purpose, bucket in REGISTRY.items():
        name = settings.bucket(purpose)
        sid = "".join(part.capitalize() for part in purpose.split("-"))
        statements.append(
            {
                "Sid": f"{sid}Bucket",
                "Effect": "Allow",
                "Action": sorted(_BUCKET),
                "Resource": f"arn:aws:s3:::{name}",
            }
        )
        statements.append(
            {
                "Sid": f"{sid}Objects",
                "Effect": "Allow",
                "Action": object_actions(bucket),
                "Resource": f"arn:aws:s3:::{name}/*",
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}
