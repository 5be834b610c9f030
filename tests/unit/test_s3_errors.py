"""botocore failures become typed errors with cause and fix (Stubber: moto never answers
AccessDenied or PermanentRedirect by itself)."""

from __future__ import annotations

import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError
from botocore.stub import Stubber

from storage import errors, objects
from storage.client import make_client
from storage.settings import StorageSettings


@pytest.fixture
def stubbed():
    client = make_client(StorageSettings.from_env({"NOTIFY_ENVIRONMENT": "test"}))
    with Stubber(client) as stub:
        yield client, stub


@pytest.mark.parametrize(
    "code,status,expected,words",
    [
        ("AccessDenied", 403, errors.S3AccessDenied, ["Access denied", "buckets policy"]),
        ("403", 403, errors.S3AccessDenied, ["s3:ListBucket"]),
        ("NoSuchBucket", 404, errors.S3NoSuchBucket, ["does not exist", "buckets create"]),
        ("PermanentRedirect", 301, errors.S3WrongRegion, ["AWS_REGION"]),
        ("NoSuchKey", 404, errors.S3NotFound, ["not found"]),
        ("404", 404, errors.S3NotFound, ["not found"]),
        ("PreconditionFailed", 412, errors.S3PreconditionFailed, ["changed"]),
        ("SlowDown", 503, errors.S3Transient, ["retry"]),
        ("InternalError", 500, errors.S3Transient, ["retry"]),
        ("ServiceUnavailable", 503, errors.S3Transient, ["retry"]),
        ("WeirdThing", 400, errors.S3Error, ["WeirdThing"]),
    ],
)
def test_client_errors_are_translated(stubbed, code, status, expected, words):
    client, stub = stubbed
    stub.add_client_error("head_object", service_error_code=code, http_status_code=status)
    with pytest.raises(expected) as caught:
        objects.head("some-bucket", "some/key", client=client)
    assert type(caught.value) is expected
    for word in words:
        assert word in caught.value.message
    assert caught.value.bucket == "some-bucket"
    assert isinstance(caught.value.__cause__, Exception)


def test_transient_errors_are_retryable_and_others_are_not(stubbed):
    assert errors.S3Transient("x").retryable
    assert not errors.S3AccessDenied("x").retryable
    assert issubclass(errors.S3Transient, errors.TransientError)


def test_wrong_region_names_the_bucket_region(stubbed):
    client, stub = stubbed
    stub.add_client_error(
        "list_objects_v2",
        service_error_code="PermanentRedirect",
        http_status_code=301,
        response_meta={"HTTPHeaders": {"x-amz-bucket-region": "us-west-2"}},
    )
    from storage.listing import iter_objects

    with pytest.raises(errors.S3WrongRegion, match="us-west-2"):
        list(iter_objects("some-bucket", client=client))


def test_no_credentials():
    translated = errors.translate(NoCredentialsError(), bucket="b")
    assert isinstance(translated, errors.S3CredentialsMissing)
    assert "AWS_ACCESS_KEY_ID" in translated.message and "IAM role" in translated.message


def test_connection_errors_are_transient():
    translated = errors.translate(EndpointConnectionError(endpoint_url="http://x"), bucket="b")
    assert isinstance(translated, errors.S3Transient)


def test_unknown_exceptions_pass_through():
    boom = ValueError("x")
    assert errors.translate(boom) is boom


def test_failed_result_shape():
    assert errors.InvalidInput("bad id", code="invalid_id").as_result() == {
        "status": "failed",
        "error_code": "invalid_id",
        "error_message": "bad id",
    }
