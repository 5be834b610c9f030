"""Temporary logos as the admin app tags them: ``delete-after-7-days=True`` (a URL-encoded Python
bool) as well as ``=true``. S3 matches tag values case-sensitively, so the logo bucket has a
lifecycle rule per spelling, and cleanup sweeps both (moto's server over HTTP)."""

from __future__ import annotations

import pytest

from storage.buckets import TEMP_LOGO_TAG, is_temp_logo_tag
from storage.objects import get_tags, put_bytes
from tasks.cleanup.sweep import sweep
from tests.cleanup_fixtures import age, bucket, keys_in

pytestmark = pytest.mark.integration


def lifecycle_expires(client, tags: dict[str, str]) -> bool:
    """Whether an enabled Expiration rule of the logo bucket matches these tags exactly, as S3
    matches them (case-sensitive values)."""
    rules = client.get_bucket_lifecycle_configuration(Bucket=bucket("logo"))["Rules"]
    for rule in rules:
        tag = rule.get("Filter", {}).get("Tag")
        matches = tag is not None and tags.get(tag["Key"]) == tag["Value"]
        if rule["Status"] == "Enabled" and "Expiration" in rule and matches:
            return True
    return False


@pytest.mark.parametrize("value", ["true", "True"])
def test_both_spellings_are_expired_by_lifecycle_and_swept_by_cleanup(s3, value):
    key = f"temp-{value}-logo.png"
    put_bytes(bucket("logo"), key, b"png", tags={TEMP_LOGO_TAG[0]: value})
    tags = get_tags(bucket("logo"), key)
    assert tags == {"delete-after-7-days": value}
    assert is_temp_logo_tag(tags)
    assert lifecycle_expires(s3, tags)

    put_bytes(bucket("logo"), "permanent.png", b"png", tags={TEMP_LOGO_TAG[0]: value})
    age("logo", key, 8)
    age("logo", "permanent.png", 8)
    result = sweep("logo", dry_run=False)
    assert result.deleted == 1 and result.matched_by_reason == {"temporary_logo_expired": 1}
    assert keys_in("logo") == {"permanent.png"}  # permanent logos are never deleted


def test_other_values_are_not_temporary():
    assert not is_temp_logo_tag({"delete-after-7-days": "TRUE"})
    assert not is_temp_logo_tag({"delete-after-7-days": "false"})
    assert not is_temp_logo_tag({})
