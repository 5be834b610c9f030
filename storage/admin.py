"""Bucket administration: create, check and describe the registry's buckets.

``create_buckets`` never weakens or erases what a bucket already has. It merges: our lifecycle
rules go beside the team's (only rules with our IDs are replaced, and a team rule that already
does the same job is left alone), default encryption is never downgraded (KMS stays KMS),
versioning is never turned off, Block Public Access settings are only ever turned on, and the
bucket policy keeps every statement that is not ours. Each bucket's plan lists what changes and
what is left; ``dry_run`` computes the plan without writing.

``check_buckets`` returns every problem it finds, each with its cause and fix (the entries of
docs/troubleshooting.md): no credentials, access denied, no such bucket, wrong region, and drift
from each setting ``create_buckets`` makes. moto never answers PermanentRedirect, so a wrong
region is also caught by comparing GetBucketLocation with ``AWS_REGION``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from storage.buckets import REGISTRY, TEMP_LOGO_TAG, TEMP_LOGO_TAG_VALUES, BucketSpec
from storage.client import get_client
from storage.errors import NotifyError, s3_errors
from storage.settings import StorageSettings, get_settings

ABORT_INCOMPLETE_UPLOADS_DAYS = 1
TEMP_LOGO_EXPIRY_DAYS = 7
TROUBLESHOOTING = "docs/troubleshooting.md"

# Lifecycle rule IDs that are ours: only these are ever replaced or removed.
ABORT_RULE_ID = "abort-incomplete-multipart-uploads"
NONCURRENT_RULE_ID = "expire-noncurrent-versions"
TEMP_LOGO_RULE_IDS = {"true": "expire-temporary-logos", "True": "expire-temporary-logos-True"}
OUR_RULE_IDS = frozenset({ABORT_RULE_ID, NONCURRENT_RULE_ID, *TEMP_LOGO_RULE_IDS.values()})

# Bucket policy statement ids that are ours: every other statement is kept as it is.
SID_DENY_INSECURE = "NotifyDenyInsecureTransport"
SID_DENY_UNENCRYPTED = "NotifyDenyUnencryptedPutObject"
SID_DENY_OTHER_KMS_KEY = "NotifyDenyOtherKmsKey"
SID_PUBLIC_READ = "NotifyPublicReadObjects"
OUR_SIDS = frozenset(
    {SID_DENY_INSECURE, SID_DENY_UNENCRYPTED, SID_DENY_OTHER_KMS_KEY, SID_PUBLIC_READ}
)

BPA_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")


# --- what we want each bucket to have -----------------------------------------------------------


def lifecycle_rules(bucket: BucketSpec, settings: StorageSettings | None = None) -> list[dict]:
    """Our lifecycle rules for this bucket (the team's own rules are merged in by create)."""
    settings = settings or get_settings()
    rules: list[dict[str, Any]] = [
        {
            "ID": ABORT_RULE_ID,
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {
                "DaysAfterInitiation": ABORT_INCOMPLETE_UPLOADS_DAYS
            },
        }
    ]
    if bucket.expire_tagged_temp_logos:
        # One rule per spelling: S3 matches tag values case-sensitively.
        for value in TEMP_LOGO_TAG_VALUES:
            rules.append(
                {
                    "ID": TEMP_LOGO_RULE_IDS[value],
                    "Status": "Enabled",
                    "Filter": {"Tag": {"Key": TEMP_LOGO_TAG[0], "Value": value}},
                    "Expiration": {"Days": TEMP_LOGO_EXPIRY_DAYS},
                }
            )
    if bucket.critical:
        # Only noncurrent versions (overwritten or deleted ones) expire; the current one never.
        rules.append(
            {
                "ID": NONCURRENT_RULE_ID,
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "NoncurrentVersionExpiration": {"NoncurrentDays": settings.noncurrent_version_days},
            }
        )
    return rules


def public_access_block(bucket: BucketSpec) -> dict[str, bool]:
    """Block Public Access as we want it: all on, except that a public-read bucket (logos)
    may have a public bucket policy (ACLs stay blocked)."""
    return {
        flag: not (bucket.public_read and flag in ("BlockPublicPolicy", "RestrictPublicBuckets"))
        for flag in BPA_FLAGS
    }


def deny_statements(name: str, settings: StorageSettings) -> list[dict[str, Any]]:
    """Deny any request without TLS, and any PutObject (which also authorises CopyObject and
    multipart uploads) whose encryption header is not the configured one."""
    bucket_arn = f"arn:aws:s3:::{name}"
    sse = settings.sse_params()
    statements: list[dict[str, Any]] = [
        {
            "Sid": SID_DENY_INSECURE,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
        {
            "Sid": SID_DENY_UNENCRYPTED,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": f"{bucket_arn}/*",
            # A missing header does not equal the value either, so this denies both.
            "Condition": {
                "StringNotEquals": {"s3:x-amz-server-side-encryption": sse["ServerSideEncryption"]}
            },
        },
    ]
    if settings.kms_key_id:
        statements.append(
            {
                "Sid": SID_DENY_OTHER_KMS_KEY,
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"{bucket_arn}/*",
                "Condition": {
                    "StringNotEquals": {
                        "s3:x-amz-server-side-encryption-aws-kms-key-id": settings.kms_key_id
                    }
                },
            }
        )
    return statements


def public_read_statement(name: str) -> dict[str, Any]:
    """Anyone may read an object; nobody may list the bucket (no s3:ListBucket here)."""
    return {
        "Sid": SID_PUBLIC_READ,
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{name}/*",
    }


def plain_http_endpoint(settings: StorageSettings) -> bool:
    """A local S3 stand-in over plain HTTP (moto, MinIO): a TLS-only policy would refuse every
    request there, and moto applies Deny statements without reading their conditions."""
    return bool(settings.endpoint_url) and urlsplit(settings.endpoint_url).scheme == "http"


def versioning_status(name: str, *, client: Any = None) -> str:
    """``Enabled``, ``Suspended`` or ``""`` (never versioned). On a bucket that is or was
    versioned, deleting an object leaves a delete marker and keeps its versions."""
    client = client or get_client()
    with s3_errors(name):
        return client.get_bucket_versioning(Bucket=name).get("Status") or ""


# --- create: merge, never weaken ----------------------------------------------------------------


@dataclass
class BucketPlan:
    """What ``create_buckets`` did (or, in a dry run, would do) to one bucket."""

    purpose: str
    name: str
    changed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.name


def _read(call: Any, name: str, missing: tuple[str, ...]) -> Any:
    """A bucket-configuration GET, or None when the bucket has none (``missing`` codes)."""
    from botocore.exceptions import ClientError

    try:
        return call(Bucket=name)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in missing:
            return None
        with s3_errors(name):
            raise


def create_buckets(
    settings: StorageSettings | None = None,
    *,
    client: Any = None,
    dry_run: bool = False,
    deny_policy: bool | None = None,
) -> list[BucketPlan]:
    """Create every bucket (idempotent) and merge our settings into what is there.

    ``deny_policy``: set the TLS-only and encrypted-writes bucket policy statements; None means
    "unless S3_ENDPOINT_URL is plain HTTP" (see ``plain_http_endpoint``).
    """
    settings = settings or get_settings()
    client = client or get_client()
    if deny_policy is None:
        deny_policy = not plain_http_endpoint(settings)
    plans = []
    for purpose, bucket in REGISTRY.items():
        name = settings.bucket(purpose)
        plan = BucketPlan(purpose, name)
        with s3_errors(name):
            # A bucket made just now has nothing to merge with: no need to read its settings.
            exists = not _create(client, plan, settings, dry_run)
            _merge_encryption(client, plan, settings, dry_run, exists)
            _merge_versioning(client, plan, bucket, dry_run, exists)
            _merge_lifecycle(client, plan, bucket, settings, dry_run, exists)
            bpa = _merge_public_access_block(client, plan, bucket, dry_run, exists)
            _merge_bucket_policy(client, plan, bucket, settings, bpa, deny_policy, dry_run, exists)
        plans.append(plan)
    return plans


def _create(client: Any, plan: BucketPlan, settings: StorageSettings, dry_run: bool) -> bool:
    """Create the bucket unless it exists; True when it is (or, dry, would be) new."""
    if dry_run:
        try:
            client.head_bucket(Bucket=plan.name)
        except Exception as error:
            code = getattr(error, "response", {}).get("Error", {}).get("Code")
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise
            plan.changed.append(f"create the bucket in {settings.region}")
            return True
        return False
    params: dict[str, Any] = {"Bucket": plan.name}
    if settings.region != "us-east-1":
        params["CreateBucketConfiguration"] = {"LocationConstraint": settings.region}
    try:
        client.create_bucket(**params)
    except client.exceptions.BucketAlreadyOwnedByYou:
        return False
    plan.changed.append(f"created the bucket in {settings.region}")
    return True


def _merge_encryption(
    client: Any, plan: BucketPlan, settings: StorageSettings, dry_run: bool, exists: bool
) -> None:
    config = (
        _read(client.get_bucket_encryption, plan.name, _NO_ENCRYPTION) if exists else None
    ) or {}
    rules = config.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    current = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
    algorithm = current.get("SSEAlgorithm")
    key = current.get("KMSMasterKeyID")
    want = settings.sse
    if algorithm in KMS_ALGORITHMS:
        if want == "aws:kms" and key and key != settings.kms_key_id:
            plan.left.append(
                f"default encryption {algorithm} with its own key {key} (our writes name "
                "NOTIFY_S3_KMS_KEY_ID explicitly)"
            )
        elif want == "aws:kms" and not key:
            plan.left.append(f"default encryption {algorithm} with the AWS managed key")
        elif want != "aws:kms":
            plan.left.append(f"default encryption {algorithm} (never downgraded to {want})")
        return
    if algorithm == want:
        return
    rule: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": want}}
    if want == "aws:kms":
        rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] = settings.kms_key_id
        rule["BucketKeyEnabled"] = True
    plan.changed.append(f"default encryption {algorithm or 'none'} -> {want}")
    if not dry_run:
        client.put_bucket_encryption(
            Bucket=plan.name, ServerSideEncryptionConfiguration={"Rules": [rule]}
        )


def _merge_versioning(
    client: Any, plan: BucketPlan, bucket: BucketSpec, dry_run: bool, exists: bool
) -> None:
    status = client.get_bucket_versioning(Bucket=plan.name).get("Status") if exists else None
    if bucket.critical and status != "Enabled":
        plan.changed.append(f"versioning {status or 'off'} -> Enabled")
        if not dry_run:
            client.put_bucket_versioning(
                Bucket=plan.name, VersioningConfiguration={"Status": "Enabled"}
            )
    elif not bucket.critical and status:
        plan.left.append(f"versioning {status} (never turned off)")


def _whole_bucket(rule: dict[str, Any]) -> bool:
    """Whether a lifecycle rule applies to every object (no prefix, tag or size filter)."""
    filt = rule.get("Filter")
    if filt is None:
        return not rule.get("Prefix")
    return set(filt) <= {"Prefix"} and not filt.get("Prefix")


def _does_same_job(team: dict[str, Any], ours: dict[str, Any]) -> bool:
    if team.get("Status") != "Enabled":
        return False
    for action in ("AbortIncompleteMultipartUpload", "NoncurrentVersionExpiration"):
        if action in ours:
            return action in team and _whole_bucket(team)
    tag = ours.get("Filter", {}).get("Tag")
    return bool(tag) and team.get("Filter", {}).get("Tag") == tag and "Expiration" in team


def _merge_lifecycle(
    client: Any,
    plan: BucketPlan,
    bucket: BucketSpec,
    settings: StorageSettings,
    dry_run: bool,
    exists: bool,
) -> None:
    found = (
        _read(client.get_bucket_lifecycle_configuration, plan.name, _NO_LIFECYCLE)
        if exists
        else None
    )
    existing = (found or {}).get("Rules", [])
    previous = {r.get("ID"): r for r in existing if r.get("ID") in OUR_RULE_IDS}
    team = [r for r in existing if r.get("ID") not in OUR_RULE_IDS]
    merged = list(team)
    changed = False
    for ours in lifecycle_rules(bucket, settings):
        theirs = next((r for r in team if _does_same_job(r, ours)), None)
        if theirs is not None:
            plan.left.append(f"lifecycle rule {theirs.get('ID')!r} (does what {ours['ID']!r} does)")
            if ours["ID"] in previous:
                plan.changed.append(f"lifecycle rule {ours['ID']!r} removed (the team's does it)")
                changed = True
            continue
        merged.append(ours)
        before = previous.get(ours["ID"])
        if before is None:
            plan.changed.append(f"lifecycle rule {ours['ID']!r} added")
            changed = True
        elif any(before.get(k) != v for k, v in ours.items()):
            plan.changed.append(f"lifecycle rule {ours['ID']!r} updated")
            changed = True
    for rule in team:
        plan.left.append(f"lifecycle rule {rule.get('ID') or '(no id)'!r} (the team's own)")
    if changed and not dry_run:
        client.put_bucket_lifecycle_configuration(
            Bucket=plan.name, LifecycleConfiguration={"Rules": merged}
        )


def _merge_public_access_block(
    client: Any, plan: BucketPlan, bucket: BucketSpec, dry_run: bool, exists: bool
) -> dict[str, bool]:
    found = (
        _read(client.get_public_access_block, plan.name, _NO_PUBLIC_ACCESS_BLOCK)
        if exists
        else None
    )
    current = (found or {}).get("PublicAccessBlockConfiguration", {})
    want = public_access_block(bucket)
    merged = {flag: bool(current.get(flag)) or want[flag] for flag in BPA_FLAGS}
    turned_on = [flag for flag in BPA_FLAGS if merged[flag] and not current.get(flag)]
    if turned_on:
        plan.changed.append(f"Block Public Access on: {', '.join(turned_on)}")
        if not dry_run:
            client.put_public_access_block(Bucket=plan.name, PublicAccessBlockConfiguration=merged)
    kept_on = [flag for flag in BPA_FLAGS if current.get(flag) and not want[flag]]
    if kept_on:
        plan.left.append(
            f"Block Public Access {', '.join(kept_on)} on (so the public-read statement is not "
            "added; serve the objects through a CDN with its own access to the bucket)"
        )
    return merged


def _merge_bucket_policy(
    client: Any,
    plan: BucketPlan,
    bucket: BucketSpec,
    settings: StorageSettings,
    bpa: dict[str, bool],
    deny_policy: bool,
    dry_run: bool,
    exists: bool,
) -> None:
    found = _read(client.get_bucket_policy, plan.name, _NO_POLICY) if exists else None
    document = json.loads(found["Policy"]) if found else {"Version": "2012-10-17"}
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    previous = {s.get("Sid"): s for s in statements if s.get("Sid") in OUR_SIDS}
    others = [s for s in statements if s.get("Sid") not in OUR_SIDS]
    ours = deny_statements(plan.name, settings) if deny_policy else []
    if not deny_policy:
        plan.left.append(
            "no TLS-only / encrypted-writes bucket policy: S3_ENDPOINT_URL is plain HTTP"
        )
    if bucket.public_read and not (bpa["BlockPublicPolicy"] or bpa["RestrictPublicBuckets"]):
        ours.append(public_read_statement(plan.name))
    if others:
        plan.left.append(f"{len(others)} bucket policy statement(s) of the team's own")
    if {s["Sid"]: s for s in ours} == previous:
        return
    for statement in ours:
        if previous.get(statement["Sid"]) != statement:
            verb = "updated" if statement["Sid"] in previous else "added"
            plan.changed.append(f"bucket policy statement {statement['Sid']} {verb}")
    for sid in previous.keys() - {s["Sid"] for s in ours}:
        plan.changed.append(f"bucket policy statement {sid} removed")
    if dry_run:
        return
    merged = others + ours
    if merged:
        document["Statement"] = merged
        client.put_bucket_policy(Bucket=plan.name, Policy=json.dumps(document))
    else:
        client.delete_bucket_policy(Bucket=plan.name)


_NO_ENCRYPTION = ("ServerSideEncryptionConfigurationNotFoundError",)
_NO_LIFECYCLE = ("NoSuchLifecycleConfiguration",)
_NO_PUBLIC_ACCESS_BLOCK = ("NoSuchPublicAccessBlockConfiguration",)
_NO_POLICY = ("NoSuchBucketPolicy",)


# --- check: every problem with its cause and fix -------------------------------------------------


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
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _error_problem(
    purpose: str, name: str, bucket: BucketSpec, settings: StorageSettings, error: NotifyError
) -> Problem:
    """One troubleshooting entry per error, in terms of this bucket's variable and region."""
    var = f"{bucket.env_var}={name}"
    if error.code == "s3_no_credentials":
        return Problem(
            purpose,
            name,
            "not checked: no AWS credentials found",
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, configure ~/.aws/credentials "
            "(or AWS_PROFILE), or run with an IAM role "
            f"(see {TROUBLESHOOTING}#no-credentials)",
        )
    if error.code == "s3_no_such_bucket":
        return Problem(
            purpose,
            name,
            f"bucket {name!r} (from {bucket.env_var}) does not exist in {settings.region}",
            f"create it with `notify-worker buckets create`, or set {bucket.env_var} to the "
            f"name of the existing bucket (see {TROUBLESHOOTING}#no-such-bucket)",
        )
    if error.code == "s3_access_denied":
        return Problem(
            purpose,
            name,
            f"access denied to bucket {name!r}",
            "check each cause in turn: (1) the IAM policy of these credentials grants the "
            "actions in `notify-worker buckets policy` on this bucket; (2) the bucket policy "
            f"does not deny them; (3) the bucket name is right ({var}: a name owned by another "
            f"account answers AccessDenied); (4) the bucket is in {settings.region} "
            f"(AWS_REGION) (see {TROUBLESHOOTING}#access-denied)",
        )
    if error.code == "s3_wrong_region":
        return Problem(
            purpose,
            name,
            f"bucket {name!r} is not in AWS_REGION={settings.region} (PermanentRedirect)",
            f"move the bucket to {settings.region}, or set {bucket.env_var} to a bucket in "
            f"{settings.region} (see {TROUBLESHOOTING}#wrong-region)",
        )
    what, _, fix = error.message.partition(" Fix: ")
    return Problem(purpose, name, what, fix or f"see {TROUBLESHOOTING}")


def bucket_region(client: Any, name: str) -> str:
    """The bucket's region (GetBucketLocation says nothing for us-east-1 and "EU" for
    eu-west-1); S3 errors as ``NotifyError``."""
    with s3_errors(name):
        location = client.get_bucket_location(Bucket=name).get("LocationConstraint")
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)


def check_buckets(
    settings: StorageSettings | None = None,
    *,
    client: Any = None,
    deny_policy: bool | None = None,
) -> CheckResult:
    """Credentials, region, existence, encryption, lifecycle, versioning, public access and
    bucket policy of every bucket. ``deny_policy`` as for ``create_buckets``."""
    settings = settings or get_settings()
    client = client or get_client()
    if deny_policy is None:
        deny_policy = not plain_http_endpoint(settings)
    problems: list[Problem] = []
    checked: list[str] = []
    notes: list[str] = []
    regions: dict[str, str] = {}
    no_credentials = False
    for purpose, bucket in REGISTRY.items():
        name = settings.bucket(purpose)
        checked.append(name)
        if no_credentials:  # every bucket is reported; no need to ask S3 again
            problems.append(Problem(purpose, name, *_same(problems[-1])))
            continue
        try:
            region = bucket_region(client, name)
        except NotifyError as error:
            problems.append(_error_problem(purpose, name, bucket, settings, error))
            no_credentials = error.code == "s3_no_credentials"
            continue
        regions[purpose] = region
        if region != settings.region:
            problems.append(
                Problem(
                    purpose,
                    name,
                    f"bucket is in {region} but AWS_REGION is {settings.region} "
                    "(S3 would answer PermanentRedirect)",
                    f"move the bucket to {settings.region}, or set {bucket.env_var} to a "
                    f"bucket in {settings.region} (see {TROUBLESHOOTING}#wrong-region)",
                )
            )
            continue
        for part in _BUCKET_CHECKS:
            try:
                with s3_errors(name):
                    problems.extend(part(client, purpose, name, bucket, settings, deny_policy))
            except NotifyError as error:
                problems.append(_error_problem(purpose, name, bucket, settings, error))
    elsewhere = Counter(r for r in regions.values() if r != settings.region)
    if len(elsewhere) == 1 and sum(elsewhere.values()) == len(REGISTRY):
        (region,) = elsewhere
        problems.append(
            Problem(
                None,
                None,
                f"every bucket is in {region}, not AWS_REGION={settings.region}",
                f"set AWS_REGION={region} (see {TROUBLESHOOTING}#wrong-region)",
            )
        )
    if not deny_policy:
        notes.append(
            "bucket policies (TLS only, encrypted writes) not checked: S3_ENDPOINT_URL is "
            "plain HTTP"
        )
    logo = settings.bucket("logo")
    notes.append(f"logos are served at https://{settings.logo_cdn_domain}/ (bucket {logo})")
    return CheckResult(checked, problems, notes)


def _same(problem: Problem) -> tuple[str, str]:
    return problem.what, problem.fix


def _check_encryption(
    client: Any,
    purpose: str,
    name: str,
    bucket: BucketSpec,
    settings: StorageSettings,
    deny_policy: bool,
) -> list[Problem]:
    config = _read(client.get_bucket_encryption, name, _NO_ENCRYPTION) or {}
    rules = config.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    algorithms = {
        r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules
    }
    if not algorithms & {"AES256", *KMS_ALGORITHMS}:
        return [
            Problem(
                purpose,
                name,
                "no default encryption",
                f"run `notify-worker buckets create` (it sets {settings.sse} default encryption)",
            )
        ]
    if settings.sse == "aws:kms" and not algorithms & set(KMS_ALGORITHMS):
        return [
            Problem(
                purpose,
                name,
                f"default encryption is {', '.join(sorted(a for a in algorithms if a))}, but "
                "NOTIFY_S3_SSE=aws:kms",
                "run `notify-worker buckets create` (it upgrades the default to aws:kms with "
                "NOTIFY_S3_KMS_KEY_ID)",
            )
        ]
    return []


def _check_lifecycle(
    client: Any,
    purpose: str,
    name: str,
    bucket: BucketSpec,
    settings: StorageSettings,
    deny_policy: bool,
) -> list[Problem]:
    found = _read(client.get_bucket_lifecycle_configuration, name, _NO_LIFECYCLE) or {}
    enabled = [r for r in found.get("Rules", []) if r.get("Status") == "Enabled"]
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
    if bucket.expire_tagged_temp_logos:
        for value in TEMP_LOGO_TAG_VALUES:
            tag = {"Key": TEMP_LOGO_TAG[0], "Value": value}
            if not any(
                r.get("Filter", {}).get("Tag") == tag and "Expiration" in r for r in enabled
            ):
                problems.append(
                    Problem(
                        purpose,
                        name,
                        f"no lifecycle rule expiring logos tagged {TEMP_LOGO_TAG[0]}={value} "
                        "(tag values match case-sensitively)",
                        "run `notify-worker buckets create` (adds the 7-day temporary-logo "
                        "rules, one per spelling)",
                    )
                )
    if bucket.critical and not any(
        "NoncurrentVersionExpiration" in r and _whole_bucket(r) for r in enabled
    ):
        problems.append(
            Problem(
                purpose,
                name,
                "no lifecycle rule expiring noncurrent versions (old versions are kept forever)",
                "run `notify-worker buckets create` (adds a rule expiring noncurrent versions "
                f"after NOTIFY_NONCURRENT_VERSION_DAYS={settings.noncurrent_version_days})",
            )
        )
    return problems


def _check_versioning(
    client: Any,
    purpose: str,
    name: str,
    bucket: BucketSpec,
    settings: StorageSettings,
    deny_policy: bool,
) -> list[Problem]:
    status = client.get_bucket_versioning(Bucket=name).get("Status")
    if bucket.critical and status != "Enabled":
        return [
            Problem(
                purpose,
                name,
                f"versioning is {status or 'off'} on a critical bucket (an overwrite or delete "
                "could not be undone)",
                "run `notify-worker buckets create` (enables versioning), or "
                f"`aws s3api put-bucket-versioning --bucket {name} "
                "--versioning-configuration Status=Enabled`",
            )
        ]
    return []


def _check_public_access(
    client: Any,
    purpose: str,
    name: str,
    bucket: BucketSpec,
    settings: StorageSettings,
    deny_policy: bool,
) -> list[Problem]:
    found = _read(client.get_public_access_block, name, _NO_PUBLIC_ACCESS_BLOCK) or {}
    current = found.get("PublicAccessBlockConfiguration", {})
    want = public_access_block(bucket)
    off = [flag for flag in BPA_FLAGS if want[flag] and not current.get(flag)]
    if not off:
        return []
    return [
        Problem(
            purpose,
            name,
            f"Block Public Access is off for {', '.join(off)} (the bucket could be made public)",
            "run `notify-worker buckets create` (turns them on), or `aws s3api "
            f"put-public-access-block --bucket {name}` with those flags true",
        )
    ]


def _check_bucket_policy(
    client: Any,
    purpose: str,
    name: str,
    bucket: BucketSpec,
    settings: StorageSettings,
    deny_policy: bool,
) -> list[Problem]:
    found = _read(client.get_bucket_policy, name, _NO_POLICY)
    statements = json.loads(found["Policy"]).get("Statement", []) if found else []
    if isinstance(statements, dict):
        statements = [statements]
    problems = []
    if deny_policy:
        by_sid = {s.get("Sid"): s for s in statements}
        for wanted in deny_statements(name, settings):
            if by_sid.get(wanted["Sid"]) != wanted:
                problems.append(
                    Problem(
                        purpose,
                        name,
                        f"bucket policy statement {wanted['Sid']} is "
                        f"{'different' if wanted['Sid'] in by_sid else 'missing'} ("
                        + _DENY_PURPOSE[wanted["Sid"]]
                        + ")",
                        "run `notify-worker buckets create` (merges it into the bucket "
                        "policy, keeping every other statement)",
                    )
                )
    for statement in statements:
        if statement.get("Effect") != "Allow" or not _is_public(statement):
            continue
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        too_much = [a for a in actions if a != "s3:GetObject"]
        if not bucket.public_read or too_much:
            granted = ", ".join(too_much if bucket.public_read else actions)
            problems.append(
                Problem(
                    purpose,
                    name,
                    f"bucket policy statement {statement.get('Sid') or '(no Sid)'} grants "
                    f"{granted} to everyone",
                    "remove it from the bucket policy"
                    + (
                        " (logos are public to read, never to list or write)"
                        if bucket.public_read
                        else ""
                    ),
                )
            )
    return problems


def _is_public(statement: dict[str, Any]) -> bool:
    principal = statement.get("Principal")
    if principal == "*":
        return True
    if isinstance(principal, dict):
        aws = principal.get("AWS")
        return aws == "*" or (isinstance(aws, list) and "*" in aws)
    return False


_DENY_PURPOSE = {
    SID_DENY_INSECURE: "refuses requests without TLS",
    SID_DENY_UNENCRYPTED: "refuses writes without the configured server-side encryption",
    SID_DENY_OTHER_KMS_KEY: "refuses writes encrypted with another KMS key",
}
_BUCKET_CHECKS = (
    _check_encryption,
    _check_lifecycle,
    _check_versioning,
    _check_public_access,
    _check_bucket_policy,
)


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
    "s3:GetBucketPolicy",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketVersioning",
    "s3:GetEncryptionConfiguration",
    "s3:GetLifecycleConfiguration",
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    # the storage-usage report lists a versioned bucket's versions and delete markers
    "s3:ListBucketVersions",
)
# What the workflows do to the objects of each purpose (docs/storage.md and each workflow's doc).
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
    if settings.kms_key_id:
        # SSE-KMS: writes need a data key, reads (and copies, and multipart parts) decrypt one.
        # That key only, and only through S3.
        statements.append(
            {
                "Sid": "KmsKeyThroughS3",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": settings.kms_key_id,
                "Condition": {
                    "StringEquals": {"kms:ViaService": f"s3.{settings.region}.amazonaws.com"}
                },
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}
