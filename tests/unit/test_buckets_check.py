"""`check_buckets`: each troubleshooting case with its cause and fix, in terms of the bucket's own
variable and region. In-process moto, with a client that answers chosen calls with the errors
moto never gives by itself (AccessDenied, no credentials, another region)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, NoCredentialsError

from storage.admin import check_buckets
from storage.buckets import REGISTRY
from storage.settings import get_settings


class Answering:
    """The real (moto) client, except for the answers given here per (operation, bucket)."""

    def __init__(self, client: Any, answers: dict[tuple[str, str | None], Any]) -> None:
        self._client = client
        self._answers = answers
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, operation: str) -> Any:
        real = getattr(self._client, operation)

        def call(**params: Any) -> Any:
            bucket = params.get("Bucket")
            self.calls.append((operation, bucket))
            answer = self._answers.get((operation, bucket), self._answers.get((operation, None)))
            if isinstance(answer, BaseException):
                raise answer
            if answer is not None:
                return answer
            return real(**params)

        return call


def client_error(code: str, status: int, operation: str = "GetBucketLocation") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


def test_a_healthy_setup_passes_and_shows_where_logos_are_served(mock_s3):
    result = check_buckets(client=mock_s3, deny_policy=False)
    assert result.ok, [str(p) for p in result.problems]
    assert len(result.checked) == len(REGISTRY)
    assert any("https://static-logos.notify.tools/" in note for note in result.notes)


def test_access_denied_lists_every_cause(mock_s3):
    name = get_settings().bucket("mou")
    client = Answering(mock_s3, {("get_bucket_location", name): client_error("AccessDenied", 403)})
    result = check_buckets(client=client, deny_policy=False)
    (problem,) = result.problems
    assert problem.purpose == "mou"
    assert "access denied" in problem.what
    for cause in ("IAM policy", "buckets policy", "bucket policy", "S3_BUCKET_MOU=test-mou"):
        assert cause in problem.fix, cause
    assert "eu-west-1" in problem.fix and "AWS_REGION" in problem.fix
    assert "docs/troubleshooting.md#access-denied" in problem.fix


def test_no_such_bucket_names_the_variable_and_the_region(mock_s3):
    name = get_settings().bucket("letter-backups")
    mock_s3.delete_bucket(Bucket=name)
    result = check_buckets(client=mock_s3, deny_policy=False)
    (problem,) = result.problems
    assert "S3_BUCKET_PRECOMPILED_ORIGINALS_BACKUP_LETTERS" in problem.what
    assert "eu-west-1" in problem.what
    assert "S3_BUCKET_PRECOMPILED_ORIGINALS_BACKUP_LETTERS" in problem.fix
    assert "buckets create" in problem.fix
    assert "README" not in problem.fix


def test_one_bucket_in_another_region_advises_that_bucket_not_aws_region(mock_s3):
    name = get_settings().bucket("letters-pdf")
    client = Answering(
        mock_s3, {("get_bucket_location", name): {"LocationConstraint": "us-west-2"}}
    )
    result = check_buckets(client=client, deny_policy=False)
    (problem,) = result.problems
    assert problem.purpose == "letters-pdf"
    assert "us-west-2" in problem.what
    assert "move the bucket to eu-west-1" in problem.fix
    assert "S3_BUCKET_LETTERS_PDF" in problem.fix
    assert "set AWS_REGION" not in problem.fix


def test_every_bucket_in_another_region_suggests_aws_region_once(mock_s3):
    client = Answering(
        mock_s3, {("get_bucket_location", None): {"LocationConstraint": "eu-west-2"}}
    )
    result = check_buckets(client=client, deny_policy=False)
    setup = [p for p in result.problems if p.purpose is None]
    assert len(setup) == 1
    assert setup[0].fix.startswith("set AWS_REGION=eu-west-2")
    assert len([p for p in result.problems if p.purpose]) == len(REGISTRY)


def test_no_credentials_reports_every_bucket_and_asks_s3_once(mock_s3):
    client = Answering(mock_s3, {("get_bucket_location", None): NoCredentialsError()})
    result = check_buckets(client=client, deny_policy=False)
    assert [p.purpose for p in result.problems] == list(REGISTRY)
    assert all("no AWS credentials" in p.what for p in result.problems)
    assert all("IAM role" in p.fix for p in result.problems)
    assert len(client.calls) == 1


def test_access_denied_on_one_setting_is_reported_not_raised(mock_s3):
    name = get_settings().bucket("csv-upload")
    client = Answering(
        mock_s3,
        {("get_bucket_versioning", name): client_error("AccessDenied", 403, "GetBucketVersioning")},
    )
    result = check_buckets(client=client, deny_policy=False)
    (problem,) = result.problems
    assert problem.purpose == "csv-upload"
    assert "buckets policy" in problem.fix


@pytest.mark.parametrize("purpose", ["mou", "letter-backups", "letters-pdf"])
def test_a_critical_bucket_without_versioning_is_reported_with_the_fix(mock_s3, purpose):
    name = get_settings().bucket(purpose)
    mock_s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Suspended"})
    result = check_buckets(client=mock_s3, deny_policy=False)
    (problem,) = result.problems
    assert problem.purpose == purpose
    assert "versioning is Suspended" in problem.what
    assert "buckets create" in problem.fix and "put-bucket-versioning" in problem.fix
