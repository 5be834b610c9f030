"""`buckets create` merges into what a bucket already has and never weakens it; `buckets check`
reports drift from each setting. Against moto's server over HTTP, with pre-existing settings of
each kind.

moto applies a bucket policy's Deny statements without reading their conditions, so the tests
that install the TLS-only / encrypted-writes statements (``deny_policy=True``) only read bucket
settings while they are in place, and remove them before the fixture's object audit."""

from __future__ import annotations

import json

import pytest

from storage import admin
from storage.settings import get_settings

pytestmark = pytest.mark.integration

KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture
def empty(s3, moto_endpoint):
    """A moto server with no buckets at all."""
    import requests

    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    yield s3
    for name in get_settings().bucket_names.values():
        try:
            s3.delete_bucket_policy(Bucket=name)
        except Exception:  # noqa: S112  (the bucket may not exist in a dry-run test)
            continue


def name(purpose: str) -> str:
    return get_settings().bucket(purpose)


def plans_by_purpose(plans: list[admin.BucketPlan]) -> dict[str, admin.BucketPlan]:
    return {p.purpose: p for p in plans}


def rules(client, purpose: str) -> dict[str, dict]:
    found = client.get_bucket_lifecycle_configuration(Bucket=name(purpose))["Rules"]
    return {r["ID"]: r for r in found}


def statements(client, purpose: str) -> dict[str, dict]:
    policy = json.loads(client.get_bucket_policy(Bucket=name(purpose))["Policy"])
    return {s.get("Sid"): s for s in policy["Statement"]}


def make(client, purpose: str) -> None:
    client.create_bucket(
        Bucket=name(purpose), CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )


def test_a_fresh_create_sets_everything_and_a_second_changes_nothing(empty):
    plans = admin.create_buckets(deny_policy=True)
    assert all("created the bucket in eu-west-1" in p.changed for p in plans)
    for purpose in ("mou", "letter-backups", "letters-pdf"):
        assert empty.get_bucket_versioning(Bucket=name(purpose))["Status"] == "Enabled"
        noncurrent = rules(empty, purpose)["expire-noncurrent-versions"]
        assert noncurrent["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90
        assert "Expiration" not in noncurrent  # never the current version
    assert "Status" not in empty.get_bucket_versioning(Bucket=name("csv-upload"))
    for purpose in get_settings().bucket_names:
        block = empty.get_public_access_block(Bucket=name(purpose))
        flags = block["PublicAccessBlockConfiguration"]
        if purpose == "logo":
            assert flags == {
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": False,
                "RestrictPublicBuckets": False,
            }
        else:
            assert all(flags.values()), purpose
        ours = statements(empty, purpose)
        tls = ours["NotifyDenyInsecureTransport"]
        assert tls["Effect"] == "Deny"
        assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        sse = ours["NotifyDenyUnencryptedPutObject"]
        assert sse["Action"] == "s3:PutObject"
        assert sse["Condition"] == {
            "StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}
        }
        if purpose == "logo":
            public = ours["NotifyPublicReadObjects"]
            assert public["Action"] == "s3:GetObject"  # read objects; never list
            assert public["Resource"].endswith("/*")
        else:
            assert "NotifyPublicReadObjects" not in ours
    assert admin.check_buckets(deny_policy=True).ok
    again = admin.create_buckets(deny_policy=True)
    assert [p.changed for p in again] == [[] for _ in again]


def test_dry_run_shows_the_plan_and_writes_nothing(empty):
    plans = plans_by_purpose(admin.create_buckets(dry_run=True))
    assert "create the bucket in eu-west-1" in plans["mou"].changed
    assert "versioning off -> Enabled" in plans["mou"].changed
    assert "lifecycle rule 'expire-noncurrent-versions' added" in plans["mou"].changed
    assert empty.list_buckets()["Buckets"] == []
    # on existing buckets with drift: the plan names it, the bucket keeps it
    admin.create_buckets()
    empty.put_bucket_versioning(
        Bucket=name("letters-pdf"), VersioningConfiguration={"Status": "Suspended"}
    )
    plan = plans_by_purpose(admin.create_buckets(dry_run=True))["letters-pdf"]
    assert plan.changed == ["versioning Suspended -> Enabled"]
    assert empty.get_bucket_versioning(Bucket=name("letters-pdf"))["Status"] == "Suspended"


def test_kms_default_encryption_is_never_downgraded(empty):
    make(empty, "mou")
    empty.put_bucket_encryption(
        Bucket=name("mou"),
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": KMS_KEY,
                    },
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    plan = plans_by_purpose(admin.create_buckets())["mou"]
    rule = empty.get_bucket_encryption(Bucket=name("mou"))["ServerSideEncryptionConfiguration"]
    default = rule["Rules"][0]["ApplyServerSideEncryptionByDefault"]
    assert default == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KMS_KEY}
    assert any("aws:kms (never downgraded to AES256)" in left for left in plan.left)
    assert not any("encryption" in change for change in plan.changed)


def test_the_teams_lifecycle_rules_stay_beside_ours(empty):
    make(empty, "mou")
    make(empty, "csv-upload")
    team_noncurrent = {
        "ID": "team-keep-old-versions-a-year",
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 365},
    }
    empty.put_bucket_lifecycle_configuration(
        Bucket=name("mou"), LifecycleConfiguration={"Rules": [team_noncurrent]}
    )
    team_prefix = {
        "ID": "team-expire-scratch",
        "Status": "Enabled",
        "Filter": {"Prefix": "scratch/"},
        "Expiration": {"Days": 2},
    }
    stale_ours = {
        "ID": "abort-incomplete-multipart-uploads",
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 30},
    }
    empty.put_bucket_lifecycle_configuration(
        Bucket=name("csv-upload"), LifecycleConfiguration={"Rules": [team_prefix, stale_ours]}
    )
    plans = plans_by_purpose(admin.create_buckets())

    mou = rules(empty, "mou")
    # their noncurrent rule already does the job: kept as it is, ours not added (never shorter)
    assert mou["team-keep-old-versions-a-year"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": 365
    }
    assert "expire-noncurrent-versions" not in mou
    assert "abort-incomplete-multipart-uploads" in mou
    assert any("team-keep-old-versions-a-year" in left for left in plans["mou"].left)

    csv = rules(empty, "csv-upload")
    assert csv["team-expire-scratch"]["Expiration"] == {"Days": 2}
    assert csv["team-expire-scratch"]["Filter"] == {"Prefix": "scratch/"}
    # a rule with our ID is ours to replace
    assert csv["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 1
    }
    assert "lifecycle rule 'abort-incomplete-multipart-uploads' updated" in (
        plans["csv-upload"].changed
    )
    assert admin.check_buckets().ok


def test_versioning_is_never_turned_off(empty):
    make(empty, "csv-upload")
    empty.put_bucket_versioning(
        Bucket=name("csv-upload"), VersioningConfiguration={"Status": "Enabled"}
    )
    make(empty, "letter-backups")
    empty.put_bucket_versioning(
        Bucket=name("letter-backups"), VersioningConfiguration={"Status": "Suspended"}
    )
    plans = plans_by_purpose(admin.create_buckets())
    assert empty.get_bucket_versioning(Bucket=name("csv-upload"))["Status"] == "Enabled"
    assert "versioning Enabled (never turned off)" in plans["csv-upload"].left
    assert empty.get_bucket_versioning(Bucket=name("letter-backups"))["Status"] == "Enabled"
    assert "versioning Suspended -> Enabled" in plans["letter-backups"].changed


def test_block_public_access_is_only_ever_turned_on(empty):
    make(empty, "logo")
    every_flag_on = dict.fromkeys(admin.BPA_FLAGS, True)
    empty.put_public_access_block(Bucket=name("logo"), PublicAccessBlockConfiguration=every_flag_on)
    make(empty, "report-downloads")
    empty.put_public_access_block(
        Bucket=name("report-downloads"),
        PublicAccessBlockConfiguration={**every_flag_on, "RestrictPublicBuckets": False},
    )
    plans = plans_by_purpose(admin.create_buckets())
    logo = empty.get_public_access_block(Bucket=name("logo"))["PublicAccessBlockConfiguration"]
    assert logo == every_flag_on  # a team that locked it down keeps it locked down
    assert "NotifyPublicReadObjects" not in statements_or_empty(empty, "logo")
    assert any("CDN" in left for left in plans["logo"].left)
    reports = empty.get_public_access_block(Bucket=name("report-downloads"))
    assert reports["PublicAccessBlockConfiguration"] == every_flag_on
    assert "Block Public Access on: RestrictPublicBuckets" in plans["report-downloads"].changed


def statements_or_empty(client, purpose: str) -> dict[str, dict]:
    try:
        return statements(client, purpose)
    except client.exceptions.ClientError:
        return {}


def test_the_teams_bucket_policy_statements_are_kept(empty):
    make(empty, "letters-pdf")
    theirs = {
        "Sid": "PrintProviderReads",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::210987654321:role/print"},
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{name('letters-pdf')}/*",
    }
    stale = {
        "Sid": "NotifyDenyUnencryptedPutObject",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{name('letters-pdf')}/*",
        "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}},
    }
    empty.put_bucket_policy(
        Bucket=name("letters-pdf"),
        Policy=json.dumps({"Version": "2012-10-17", "Statement": [theirs, stale]}),
    )
    plan = plans_by_purpose(admin.create_buckets(deny_policy=True))["letters-pdf"]
    found = statements(empty, "letters-pdf")
    assert found["PrintProviderReads"] == theirs
    assert found["NotifyDenyUnencryptedPutObject"]["Condition"] == {
        "StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}
    }
    assert "NotifyDenyInsecureTransport" in found
    assert "bucket policy statement NotifyDenyUnencryptedPutObject updated" in plan.changed
    assert "1 bucket policy statement(s) of the team's own" in plan.left


def test_on_plain_http_the_deny_statements_are_left_out_and_said_so(empty):
    plans = admin.create_buckets()  # S3_ENDPOINT_URL is moto's http:// URL
    assert all(any("plain HTTP" in left for left in p.left) for p in plans)
    assert "NotifyDenyInsecureTransport" not in statements_or_empty(empty, "mou")
    result = admin.check_buckets()
    assert result.ok
    assert any("plain HTTP" in note for note in result.notes)


def test_check_reports_drift_from_each_setting(empty):
    admin.create_buckets(deny_policy=True)
    assert admin.check_buckets(deny_policy=True).ok
    empty.put_bucket_versioning(Bucket=name("mou"), VersioningConfiguration={"Status": "Suspended"})
    empty.delete_bucket_lifecycle(Bucket=name("letter-backups"))
    empty.put_public_access_block(
        Bucket=name("csv-upload"),
        PublicAccessBlockConfiguration={
            **dict.fromkeys(admin.BPA_FLAGS, True),
            "BlockPublicPolicy": False,
        },
    )
    tls_gone = statements(empty, "report-downloads")
    del tls_gone["NotifyDenyInsecureTransport"]
    empty.put_bucket_policy(
        Bucket=name("report-downloads"),
        Policy=json.dumps({"Version": "2012-10-17", "Statement": list(tls_gone.values())}),
    )
    logo = statements(empty, "logo")
    logo["TeamListing"] = {
        "Sid": "TeamListing",
        "Effect": "Allow",
        "Principal": "*",
        "Action": ["s3:GetObject", "s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{name('logo')}", f"arn:aws:s3:::{name('logo')}/*"],
    }
    empty.put_bucket_policy(
        Bucket=name("logo"),
        Policy=json.dumps({"Version": "2012-10-17", "Statement": list(logo.values())}),
    )
    result = admin.check_buckets(deny_policy=True)
    found = {(p.purpose, p.what.split(" (")[0]) for p in result.problems}
    assert found == {
        ("mou", "versioning is Suspended on a critical bucket"),
        ("letter-backups", "no lifecycle rule aborting incomplete multipart uploads"),
        ("letter-backups", "no lifecycle rule expiring noncurrent versions"),
        ("csv-upload", "Block Public Access is off for BlockPublicPolicy"),
        ("report-downloads", "bucket policy statement NotifyDenyInsecureTransport is missing"),
        ("logo", "bucket policy statement TeamListing grants s3:ListBucket to everyone"),
    }
    assert all(p.fix for p in result.problems)
    # and create repairs all of it except the team's own statement, which it never erases
    admin.create_buckets(deny_policy=True)
    (left,) = admin.check_buckets(deny_policy=True).problems
    assert left.purpose == "logo" and "TeamListing" in left.what


def test_a_wrong_kms_setting_is_caught_by_check(empty, monkeypatch):
    admin.create_buckets()
    monkeypatch.setenv("NOTIFY_S3_SSE", "aws:kms")
    monkeypatch.setenv("NOTIFY_S3_KMS_KEY_ID", KMS_KEY)
    from storage.settings import reload_settings

    try:
        settings = reload_settings()
        result = admin.check_buckets(settings)
        assert {p.what.split(",")[0] for p in result.problems} == {"default encryption is AES256"}
        plan = plans_by_purpose(admin.create_buckets(settings))["csv-upload"]
        assert "default encryption AES256 -> aws:kms" in plan.changed
        config = empty.get_bucket_encryption(Bucket=name("csv-upload"))
        rule = config["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert rule["ApplyServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": KMS_KEY,
        }
        assert admin.check_buckets(settings).ok
    finally:
        monkeypatch.delenv("NOTIFY_S3_SSE")
        monkeypatch.delenv("NOTIFY_S3_KMS_KEY_ID")
        reload_settings()
