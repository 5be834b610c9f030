"""`buckets create` / `buckets check` against moto's server over HTTP, through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = dict(os.environ)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        check=False,
    )


@pytest.fixture
def fresh_server(s3, moto_endpoint):
    """An empty moto server (no buckets) for this test."""
    import requests

    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    return s3


def test_create_then_check_passes(fresh_server):
    created = run_cli("buckets", "create")
    assert created.returncode == 0, created.stderr
    assert "test-csv-upload" in created.stdout
    checked = run_cli("buckets", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "all 10 buckets ok" in checked.stdout
    assert run_cli("buckets", "create").returncode == 0  # idempotent


def test_check_fails_naming_a_deleted_bucket(fresh_server):
    assert run_cli("buckets", "create").returncode == 0
    fresh_server.delete_bucket(Bucket="test-mou")
    checked = run_cli("buckets", "check")
    assert checked.returncode == 1
    assert "FAIL" not in checked.stdout  # FAIL lines go to stderr
    assert "test-mou" in checked.stderr
    assert "does not exist in eu-west-1" in checked.stderr
    assert "S3_BUCKET_MOU" in checked.stderr
    assert "notify-worker buckets create" in checked.stderr
    assert "docs/troubleshooting.md" in checked.stderr
    assert "ok   test-csv-upload" in checked.stdout


def test_check_reports_missing_encryption_and_lifecycle(fresh_server):
    assert run_cli("buckets", "create").returncode == 0
    fresh_server.delete_bucket_encryption(Bucket="test-logo")
    fresh_server.delete_bucket_lifecycle(Bucket="test-logo")
    checked = run_cli("buckets", "check")
    assert checked.returncode == 1
    out = checked.stderr
    assert "no default encryption" in out
    assert "aborting incomplete multipart uploads" in out
    assert "delete-after-7-days=true" in out
    assert "delete-after-7-days=True" in out


def test_check_detects_wrong_region(fresh_server):
    assert run_cli("buckets", "create").returncode == 0
    checked = run_cli("buckets", "check", AWS_REGION="eu-west-2")
    assert checked.returncode == 1
    assert "bucket is in eu-west-1 but AWS_REGION is eu-west-2" in checked.stderr
    # every bucket is elsewhere: one setup-level fix; per bucket, move it or fix its variable
    assert checked.stderr.count("set AWS_REGION=eu-west-1") == 1
    assert "or set S3_BUCKET_LETTERS_PDF to a bucket in eu-west-2" in checked.stderr


def test_lifecycle_rules_created(fresh_server):
    assert run_cli("buckets", "create").returncode == 0
    rules = fresh_server.get_bucket_lifecycle_configuration(Bucket="test-logo")["Rules"]
    by_id = {r["ID"]: r for r in rules}
    assert by_id["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 1
    }
    temp = by_id["expire-temporary-logos"]
    assert temp["Expiration"]["Days"] == 7
    assert temp["Filter"]["Tag"] == {"Key": "delete-after-7-days", "Value": "true"}
    # the admin app writes the tag from a Python bool: "True"; tag values are case-sensitive
    capital = by_id["expire-temporary-logos-True"]
    assert capital["Expiration"]["Days"] == 7
    assert capital["Filter"]["Tag"] == {"Key": "delete-after-7-days", "Value": "True"}
    encryption = fresh_server.get_bucket_encryption(Bucket="test-letters-pdf")
    rule = encryption["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_production_without_bucket_variables_fails_naming_them():
    out = run_cli("buckets", "check", NOTIFY_ENVIRONMENT="production")
    assert out.returncode == 2
    assert "S3_BUCKET_CSV_UPLOAD" in out.stderr
    assert "Traceback" not in out.stderr


def test_worker_refuses_to_start_without_bucket_variables(tmp_path):
    from worker.local.stack import start_worker_process

    env = dict(os.environ, NOTIFY_ENVIRONMENT="production")
    with pytest.raises(RuntimeError) as caught:
        start_worker_process(env, tmp_path / "w.log", concurrency=1, ready_timeout=60)
    assert "S3_BUCKET_CSV_UPLOAD" in str(caught.value)


def test_check_without_credentials_says_how_to_fix_it(fresh_server):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ACCESS_KEY")}
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    out = subprocess.run(
        [sys.executable, "-m", "worker", "buckets", "check"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert out.returncode == 1
    # every bucket is reported, not only the first
    assert out.stderr.count("no AWS credentials found") == 10
    for name in ("test-csv-upload", "test-letters-pdf"):
        assert f"({name}): not checked: no AWS credentials found" in out.stderr
    assert "IAM role" in out.stderr
    assert "Traceback" not in out.stderr


def test_create_dry_run_prints_the_plan_and_creates_nothing(fresh_server):
    planned = run_cli("buckets", "create", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert "would change  test-mou  (mou)" in planned.stdout
    assert "would change: versioning off -> Enabled" in planned.stdout
    assert "dry run: 10 of 10 buckets would change; nothing written" in planned.stdout
    assert fresh_server.list_buckets()["Buckets"] == []
    created = run_cli("buckets", "create")
    assert "changed: created the bucket in eu-west-1" in created.stdout
    again = run_cli("buckets", "create", "--dry-run")
    assert "dry run: 0 of 10 buckets would change" in again.stdout
    assert "left:    no TLS-only / encrypted-writes bucket policy" in again.stdout
