"""``buckets policy``: least privilege, per bucket, valid as IAM reads it."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from storage.admin import iam_policy, object_actions
from storage.buckets import REGISTRY
from storage.settings import StorageSettings

# Real IAM action names for S3 (service authorization reference), the ones a worker could need.
BUCKET_LEVEL = {
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    "s3:GetBucketLocation",
    "s3:GetEncryptionConfiguration",
    "s3:GetLifecycleConfiguration",
    # what `buckets check` reads besides: versioning, Block Public Access, the bucket policy
    "s3:GetBucketVersioning",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketPolicy",
    "s3:ListBucketVersions",  # storage-usage on versioned buckets
}
OBJECT_LEVEL = {
    "s3:GetObject",
    "s3:GetObjectTagging",
    "s3:PutObject",
    "s3:PutObjectTagging",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
}
ARN = re.compile(r"arn:aws:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\*)?")


def settings(**env: str) -> StorageSettings:
    return StorageSettings.from_env({"NOTIFY_ENVIRONMENT": "test", **env})


@pytest.fixture
def policy() -> dict:
    return iam_policy(settings())


def by_sid(policy: dict) -> dict[str, dict]:
    return {s["Sid"]: s for s in policy["Statement"]}


def actions_on(policy: dict, resource: str) -> set[str]:
    found: set[str] = set()
    for statement in policy["Statement"]:
        if statement["Resource"] == resource:
            found.update(statement["Action"])
    return found


def test_the_document_is_valid_iam(policy):
    assert set(policy) == {"Version", "Statement"}
    assert policy["Version"] == "2012-10-17"
    assert isinstance(policy["Statement"], list) and policy["Statement"]
    sids = [s["Sid"] for s in policy["Statement"]]
    assert len(sids) == len(set(sids))
    for statement in policy["Statement"]:
        assert set(statement) == {"Sid", "Effect", "Action", "Resource"}
        assert re.fullmatch(r"[A-Za-z0-9]+", statement["Sid"])
        assert statement["Effect"] == "Allow"
        assert isinstance(statement["Action"], list) and statement["Action"]
        assert ARN.fullmatch(statement["Resource"]), statement["Resource"]
    json.dumps(policy)  # plain JSON


def test_only_real_actions_and_no_wildcards(policy):
    every = {a for s in policy["Statement"] for a in s["Action"]}
    assert "s3:HeadObject" not in every  # not an IAM action: HEAD is authorised by GetObject
    assert "s3:ListMultipartUploadParts" not in every  # the workers never list parts
    assert every <= BUCKET_LEVEL | OBJECT_LEVEL
    assert not any("*" in a for a in every)


def test_resources_are_exactly_the_configured_buckets(policy):
    names = settings().bucket_names.values()
    expected = {f"arn:aws:s3:::{n}" for n in names} | {f"arn:aws:s3:::{n}/*" for n in names}
    assert {s["Resource"] for s in policy["Statement"]} == expected


def test_bucket_actions_on_buckets_and_object_actions_on_objects(policy):
    for statement in policy["Statement"]:
        on_objects = statement["Resource"].endswith("/*")
        allowed = OBJECT_LEVEL if on_objects else BUCKET_LEVEL
        assert set(statement["Action"]) <= allowed, statement["Sid"]


def test_every_bucket_can_be_listed_so_missing_keys_read_as_404(policy):
    for name in settings().bucket_names.values():
        assert "s3:ListBucket" in actions_on(policy, f"arn:aws:s3:::{name}")


def test_protected_buckets_can_never_be_deleted_from(policy):
    for purpose, spec in REGISTRY.items():
        name = settings().bucket(purpose)
        if spec.protected:
            assert "s3:DeleteObject" not in actions_on(policy, f"arn:aws:s3:::{name}/*"), purpose


@pytest.mark.parametrize(
    ("purpose", "expected"),
    [
        # streamed, metadata rewritten by a copy onto itself, cleaned up
        (
            "csv-upload",
            {"GetObject", "GetObjectTagging", "PutObject", "PutObjectTagging", "DeleteObject"},
        ),
        (
            "contact-list",
            {"GetObject", "GetObjectTagging", "PutObject", "PutObjectTagging", "DeleteObject"},
        ),
        ("logo", {"DeleteObject"}),
        ("mou", set()),
        ("transient-letters", {"GetObject", "GetObjectTagging", "DeleteObject"}),
        ("letter-backups", {"GetObject", "GetObjectTagging", "PutObject", "PutObjectTagging"}),
        ("letter-attachments", {"DeleteObject"}),
        (
            "report-downloads",
            {"GetObject", "GetObjectTagging", "PutObject", "PutObjectTagging", "DeleteObject"},
        ),
        ("email-attachments", {"DeleteObject"}),
        ("letters-pdf", {"GetObject", "GetObjectTagging", "PutObject", "PutObjectTagging"}),
    ],
)
def test_object_actions_per_purpose(purpose, expected):
    # Aborting stale multipart uploads is cleanup's job in every bucket (it deletes no object).
    wanted = {f"s3:{a}" for a in expected} | {"s3:AbortMultipartUpload"}
    assert set(object_actions(REGISTRY[purpose])) == wanted


def test_every_purpose_is_covered(policy):
    sids = by_sid(policy)
    for purpose in REGISTRY:
        sid = "".join(p.capitalize() for p in purpose.split("-"))
        assert f"{sid}Bucket" in sids and f"{sid}Objects" in sids


def test_configured_names_are_used(tmp_path):
    env = {spec.env_var: f"prod-{purpose}" for purpose, spec in REGISTRY.items()}
    env["S3_BUCKET_MOU"] = "notify.tools-mou"
    policy = iam_policy(StorageSettings.from_env({"NOTIFY_ENVIRONMENT": "production", **env}))
    resources = {s["Resource"] for s in policy["Statement"]}
    assert "arn:aws:s3:::notify.tools-mou/*" in resources
    assert "arn:aws:s3:::prod-csv-upload" in resources
    assert not any("test-" in r for r in resources)


def test_cli_prints_the_policy(monkeypatch):
    from storage.settings import reload_settings
    from worker.cli import main

    monkeypatch.setenv("S3_BUCKET_LETTERS_PDF", "custom-letters-pdf")
    reload_settings()
    try:
        result = CliRunner().invoke(main, ["buckets", "policy"])
        assert result.exit_code == 0, result.output
        printed = json.loads(result.output)
        assert printed == iam_policy()
        assert "arn:aws:s3:::custom-letters-pdf/*" in {s["Resource"] for s in printed["Statement"]}
    finally:
        monkeypatch.delenv("S3_BUCKET_LETTERS_PDF")
        reload_settings()


KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def test_without_kms_no_kms_action_is_granted(policy):
    assert not any(a.startswith("kms:") for s in policy["Statement"] for a in s["Action"])


def test_with_kms_the_policy_grants_that_key_only_and_only_through_s3():
    policy = iam_policy(settings(NOTIFY_S3_SSE="aws:kms", NOTIFY_S3_KMS_KEY_ID=KMS_KEY))
    kms = [s for s in policy["Statement"] if any(a.startswith("kms:") for a in s["Action"])]
    assert len(kms) == 1
    (statement,) = kms
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert statement["Resource"] == KMS_KEY
    assert statement["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}
    }
    # the S3 statements are exactly those without KMS
    without = iam_policy(settings())["Statement"]
    assert [s for s in policy["Statement"] if s not in kms] == without


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NOTIFY_S3_SSE": "aws:kms"}, "needs NOTIFY_S3_KMS_KEY_ID"),
        ({"NOTIFY_S3_SSE": "aws:kms", "NOTIFY_S3_KMS_KEY_ID": "alias/notify"}, "key ARN"),
        ({"NOTIFY_S3_SSE": "aws:kms", "NOTIFY_S3_KMS_KEY_ID": "1234abcd"}, "key ARN"),
        ({"NOTIFY_S3_KMS_KEY_ID": KMS_KEY}, "NOTIFY_S3_SSE is not aws:kms"),
        ({"NOTIFY_S3_SSE": "aes256"}, "NOTIFY_S3_SSE must be one of AES256, aws:kms"),
        ({"NOTIFY_NONCURRENT_VERSION_DAYS": "0"}, "NOTIFY_NONCURRENT_VERSION_DAYS"),
    ],
)
def test_bad_encryption_settings_are_clear_startup_errors(env, message):
    from storage.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=message):
        settings(**env)


def test_sse_params_follow_the_setting():
    assert settings().sse_params() == {"ServerSideEncryption": "AES256"}
    kms = settings(NOTIFY_S3_SSE="aws:kms", NOTIFY_S3_KMS_KEY_ID=KMS_KEY)
    assert kms.sse_params() == {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": KMS_KEY,
        "BucketKeyEnabled": True,
    }
