"""`check_buckets` reports AccessDenied and a wrong region with their fixes (Stubber: moto never
answers AccessDenied or PermanentRedirect by itself)."""

from __future__ import annotations

from botocore.stub import ANY, Stubber

from storage.admin import check_buckets
from storage.buckets import REGISTRY
from storage.client import make_client
from storage.settings import StorageSettings


def _settings() -> StorageSettings:
    return StorageSettings.from_env({"NOTIFY_ENVIRONMENT": "test"})


def _healthy(stub: Stubber, name: str, *, lifecycle_tag: bool) -> None:
    stub.add_response(
        "get_bucket_encryption",
        {
            "ServerSideEncryptionConfiguration": {
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            }
        },
        {"Bucket": name},
    )
    rules = [
        {
            "ID": "a",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
    ]
    if lifecycle_tag:
        rules.append(
            {
                "ID": "t",
                "Status": "Enabled",
                "Expiration": {"Days": 7},
                "Filter": {"Tag": {"Key": "delete-after-7-days", "Value": "true"}},
            }
        )
    stub.add_response("get_bucket_lifecycle_configuration", {"Rules": rules}, {"Bucket": name})


def test_access_denied_and_wrong_region_are_reported_with_fixes():
    settings = _settings()
    client = make_client(settings)
    with Stubber(client) as stub:
        for purpose, spec in REGISTRY.items():
            name = settings.bucket(purpose)
            if purpose == "mou":
                stub.add_client_error(
                    "get_bucket_location",
                    "AccessDenied",
                    http_status_code=403,
                    expected_params={"Bucket": ANY},
                )
                continue
            region = "us-west-2" if purpose == "letters-pdf" else "eu-west-1"
            stub.add_response(
                "get_bucket_location", {"LocationConstraint": region}, {"Bucket": name}
            )
            _healthy(stub, name, lifecycle_tag=spec.expire_tagged_temp_logos)
        result = check_buckets(settings, client=client)
    problems = {p.purpose: p for p in result.problems}
    assert set(problems) == {"mou", "letters-pdf"}
    assert "Access denied" in problems["mou"].what
    assert "buckets policy" in problems["mou"].fix
    assert "us-west-2" in problems["letters-pdf"].what
    assert problems["letters-pdf"].fix.startswith("set AWS_REGION=us-west-2")
    assert not result.ok
