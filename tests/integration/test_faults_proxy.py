"""The fault proxy itself: it forwards faithfully, and each fault does what it says.

If the proxy silently forwarded everything, every ``test_faults_*`` test would pass for the
wrong reason; these tests pin down that each fault kind reaches botocore as it should.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import uuid

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from storage.buckets import SSE
from storage.client import client_config, get_client
from storage.settings import get_settings
from tests.faults import DEFAULT_KINDS, FaultProxy, operation_name

pytestmark = pytest.mark.integration

_BUCKET: list[str] = []


def _bucket() -> str:
    return _BUCKET[-1]


@pytest.fixture(scope="module")
def direct(moto_endpoint):
    """A client talking to moto directly (never faulted)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=moto_endpoint,
        config=Config(region_name="eu-west-1", s3={"addressing_style": "path"}),
    )


@pytest.fixture(scope="module")
def module_proxy(moto_endpoint):
    """One proxy for the module, with this process's S3 client behind it.

    Lighter than the ``s3`` fixture (no moto reset, no registry buckets, no new clients per
    test): these tests only exercise the proxy.
    """
    import os

    from storage.settings import reload_settings

    with FaultProxy(moto_endpoint) as proxy:
        os.environ["S3_ENDPOINT_URL"] = proxy.url
        reload_settings()
        try:
            yield proxy
        finally:
            os.environ["S3_ENDPOINT_URL"] = moto_endpoint
            reload_settings()


@pytest.fixture
def s3_faults(module_proxy, direct):
    """The module's proxy back to its defaults, and one fresh bucket of our own."""
    proxy = module_proxy
    proxy.rate, proxy.kinds, proxy.operations, proxy.enabled = 0.1, DEFAULT_KINDS, None, True
    proxy._forced.clear()
    proxy.release_all()
    proxy.reset_counters()
    name = f"proxy-test-{uuid.uuid4().hex[:12]}"
    direct.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    _BUCKET.append(name)
    yield proxy
    proxy.release_all()
    for upload in direct.list_multipart_uploads(Bucket=name).get("Uploads", []):
        direct.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    for obj in direct.list_objects_v2(Bucket=name).get("Contents", []):
        direct.delete_object(Bucket=name, Key=obj["Key"])
    direct.delete_bucket(Bucket=name)


@functools.cache
def _single_attempt_client():
    """No retries: botocore's ``max_attempts`` counts retries, ``total_max_attempts`` tries."""
    import boto3
    from botocore.config import Config

    settings = get_settings()
    config = client_config(settings).merge(
        Config(retries={"mode": "standard", "total_max_attempts": 1})
    )
    return boto3.session.Session().client("s3", endpoint_url=settings.endpoint_url, config=config)


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "expected"),
    [
        ("GET", "/b", "list-type=2&prefix=x", {}, "ListObjectsV2"),
        ("GET", "/b", "uploads", {}, "ListMultipartUploads"),
        ("POST", "/b/k", "uploads", {}, "CreateMultipartUpload"),
        ("PUT", "/b/k", "partNumber=1&uploadId=u", {}, "UploadPart"),
        ("PUT", "/b/k", "partNumber=1&uploadId=u", {"x-amz-copy-source": "a"}, "UploadPartCopy"),
        ("POST", "/b/k", "uploadId=u", {}, "CompleteMultipartUpload"),
        ("DELETE", "/b/k", "uploadId=u", {}, "AbortMultipartUpload"),
        ("POST", "/b", "delete", {}, "DeleteObjects"),
        ("PUT", "/b/k", "", {"x-amz-copy-source": "b/k"}, "CopyObject"),
        ("PUT", "/b/k/deep", "", {}, "PutObject"),
        ("GET", "/b/k", "", {}, "GetObject"),
        ("HEAD", "/b/k", "", {}, "HeadObject"),
        ("DELETE", "/b/k", "", {}, "DeleteObject"),
        ("GET", "/b/k", "tagging", {}, "GetObjectTagging"),
        ("GET", "/b", "location", {}, "GetBucketLocation"),
        ("PUT", "/b", "", {}, "CreateBucket"),
        ("GET", "/", "", {}, "ListBuckets"),
    ],
)
def test_operation_names(method, path, query, headers, expected):
    assert operation_name(method, path, query, headers) == expected


def test_forwards_faithfully_when_no_fault(s3_faults):
    s3_faults.rate = 0
    client = get_client()
    body = bytes(range(256)) * 12_000  # ~3 MB, streamed through in 64 KiB chunks
    client.put_object(Bucket=_bucket(), Key="big.bin", Body=body, ServerSideEncryption=SSE)
    got = client.get_object(Bucket=_bucket(), Key="big.bin")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
    assert client.head_object(Bucket=_bucket(), Key="big.bin")["ContentLength"] == len(body)
    listed = client.list_objects_v2(Bucket=_bucket())["Contents"]
    assert [o["Key"] for o in listed] == ["big.bin"]
    client.delete_object(Bucket=_bucket(), Key="big.bin")
    assert s3_faults.faults == 0
    stats = s3_faults.stats()
    assert stats["PutObject"]["requests"] == 1
    assert stats["GetObject"]["requests"] == 1
    assert stats["DeleteObject"]["requests"] == 1
    assert s3_faults.unencrypted_writes == []


@pytest.mark.parametrize(
    ("kind", "code"), [("slowdown", "SlowDown"), ("internal", "InternalError")]
)
def test_error_faults_reach_botocore_as_s3_errors(s3_faults, kind, code):
    s3_faults.force("PutObject", kind)
    client = _single_attempt_client()
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket=_bucket(), Key="k", Body=b"x", ServerSideEncryption=SSE)
    assert caught.value.response["Error"]["Code"] == code
    assert get_client().list_objects_v2(Bucket=_bucket())["KeyCount"] == 0  # nothing written


def test_error_faults_on_head_requests(s3_faults):
    s3_faults.force("HeadObject", "slowdown")
    with pytest.raises(ClientError) as caught:
        _single_attempt_client().head_object(Bucket=_bucket(), Key="missing")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


@pytest.mark.parametrize(
    ("fault", "stored"),
    [
        ("drop_before", 0),  # nothing happened
        ("drop_after", 1),  # it happened, but the client did not hear
    ],
)
def test_a_dropped_connection_before_or_after_the_request_reaches_s3(s3_faults, fault, stored):
    s3_faults.force("PutObject", fault)
    with pytest.raises(ConnectionClosedError):
        _single_attempt_client().put_object(
            Bucket=_bucket(), Key="k", Body=b"x", ServerSideEncryption=SSE
        )
    assert get_client().list_objects_v2(Bucket=_bucket())["KeyCount"] == stored


def test_drop_after_exposes_a_non_idempotent_retry(s3_faults):
    """The retry of a conditional PUT that already happened is refused by its own condition."""
    s3_faults.rate = 0  # only the forced fault: the request count below is exact
    s3_faults.force("PutObject", "drop_after")
    with pytest.raises(ClientError) as caught:
        get_client().put_object(
            Bucket=_bucket(), Key="k", Body=b"x", ServerSideEncryption=SSE, IfNoneMatch="*"
        )
    assert caught.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3_faults.stats()["PutObject"] == {"requests": 2, "faults": {"drop_after": 1}}


def test_truncate_breaks_a_streaming_read(s3_faults):
    client = get_client()
    client.put_object(Bucket=_bucket(), Key="k", Body=b"y" * 100_000, ServerSideEncryption=SSE)
    s3_faults.force("GetObject", "truncate")
    body = client.get_object(Bucket=_bucket(), Key="k")["Body"]
    with pytest.raises(Exception) as caught:
        body.read()
    assert "IncompleteRead" in repr(caught.value) or "Connection" in repr(caught.value)


def test_standard_retries_absorb_single_faults(s3_faults):
    s3_faults.rate = 0  # only the forced faults
    client = get_client()
    for kind in ("slowdown", "internal", "drop_before"):
        s3_faults.force("PutObject", kind)
    for i in range(3):
        client.put_object(Bucket=_bucket(), Key=f"k{i}", Body=b"x", ServerSideEncryption=SSE)
    assert s3_faults.stats()["PutObject"] == {
        "requests": 6,
        "faults": {"slowdown": 1, "internal": 1, "drop_before": 1},
    }


def test_random_faults_are_seeded_and_near_the_rate(moto_endpoint):
    def decisions(seed: int) -> list[str | None]:
        proxy = FaultProxy(moto_endpoint, seed=seed)
        return [proxy._decide("GetObject", "/b/k", {}) for _ in range(2000)]

    first = decisions(7)
    assert first == decisions(7)
    assert first != decisions(8)
    rate = sum(d is not None for d in first) / len(first)
    assert 0.08 < rate < 0.12
    assert {d for d in first if d} == {"slowdown", "internal", "drop_before", "drop_after"}


def test_unencrypted_writes_are_flagged(s3_faults):
    s3_faults.rate = 0
    get_client().put_object(Bucket=_bucket(), Key="plain", Body=b"x")
    assert s3_faults.unencrypted_writes == [f"PutObject /{_bucket()}/plain"]


def _put_in_thread(client, key: str) -> tuple[threading.Thread, list]:
    outcome: list = []

    def put() -> None:
        try:
            client.put_object(Bucket=_bucket(), Key=key, Body=b"held", ServerSideEncryption=SSE)
            outcome.append("ok")
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=put)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("forward", [False, True])
def test_a_held_request_waits_then_is_dropped_or_forwarded(s3_faults, forward):
    s3_faults.rate = 0
    held = s3_faults.hold("PutObject", "/held")
    thread, outcome = _put_in_thread(_single_attempt_client(), "held")
    held.wait(10)
    assert held.path == f"/{_bucket()}/held"
    assert get_client().list_objects_v2(Bucket=_bucket())["KeyCount"] == 0  # still waiting
    held.release(forward=forward)
    thread.join(10)
    if forward:
        assert outcome == ["ok"]
    else:
        assert isinstance(outcome[0], ConnectionClosedError)
    assert get_client().list_objects_v2(Bucket=_bucket())["KeyCount"] == int(forward)


def _multipart(client, key: str) -> tuple[str, list]:
    upload = client.create_multipart_upload(Bucket=_bucket(), Key=key, ServerSideEncryption=SSE)
    part = client.upload_part(
        Bucket=_bucket(), Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"p"
    )
    return upload["UploadId"], [{"PartNumber": 1, "ETag": part["ETag"]}]


def test_strict_mode_refuses_a_completion_over_an_existing_key_as_s3_does(s3_faults, direct):
    s3_faults.rate = 0
    client = get_client()
    upload_id, parts = _multipart(client, "k")
    direct.put_object(Bucket=_bucket(), Key="k", Body=b"first", ServerSideEncryption=SSE)
    with pytest.raises(ClientError) as caught:
        client.complete_multipart_upload(
            Bucket=_bucket(),
            Key="k",
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            IfNoneMatch="*",
        )
    assert caught.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3_faults.strict_refusals == {"CompleteMultipartUpload": 1}
    client.abort_multipart_upload(Bucket=_bucket(), Key="k", UploadId=upload_id)


def test_strict_mode_makes_a_lost_completion_answer_fail_its_retry(s3_faults):
    """moto answers a retried completion 200; S3 (If-None-Match: *) answers 412."""
    s3_faults.rate = 0
    client = get_client()
    upload_id, parts = _multipart(client, "k")
    s3_faults.force("CompleteMultipartUpload", "drop_after")
    with pytest.raises(ClientError) as caught:
        client.complete_multipart_upload(
            Bucket=_bucket(),
            Key="k",
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            IfNoneMatch="*",
        )
    assert caught.value.response["Error"]["Code"] == "PreconditionFailed"
    assert client.get_object(Bucket=_bucket(), Key="k")["Body"].read() == b"p"


def test_strict_mode_honours_copy_source_if_match(s3_faults, direct):
    s3_faults.rate = 0
    client = get_client()
    direct.put_object(Bucket=_bucket(), Key="src", Body=b"v1", ServerSideEncryption=SSE)
    with pytest.raises(ClientError) as caught:
        client.copy_object(
            Bucket=_bucket(),
            Key="dst",
            CopySource={"Bucket": _bucket(), "Key": "src"},
            CopySourceIfMatch='"0000"',
            ServerSideEncryption=SSE,
        )
    assert caught.value.response["Error"]["Code"] == "PreconditionFailed"
    etag = direct.head_object(Bucket=_bucket(), Key="src")["ETag"]
    client.copy_object(
        Bucket=_bucket(),
        Key="dst",
        CopySource={"Bucket": _bucket(), "Key": "src"},
        CopySourceIfMatch=etag,
        ServerSideEncryption=SSE,
    )
    with pytest.raises(ClientError):  # and If-None-Match now that dst exists
        client.copy_object(
            Bucket=_bucket(),
            Key="dst",
            CopySource={"Bucket": _bucket(), "Key": "src"},
            IfNoneMatch="*",
            ServerSideEncryption=SSE,
        )


def test_strict_mode_lists_multipart_uploads_with_their_real_start_time(s3_faults, direct):
    from datetime import UTC, datetime, timedelta

    s3_faults.rate = 0
    client = get_client()
    fresh, _ = _multipart(client, "fresh")
    old, _ = _multipart(client, "old")
    two_days_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    s3_faults.age_upload(old, two_days_ago)
    listed = {
        u["UploadId"]: u["Initiated"]
        for u in client.list_multipart_uploads(Bucket=_bucket())["Uploads"]
    }
    assert abs(listed[fresh] - datetime.now(UTC)) < timedelta(minutes=1)
    assert listed[old] == two_days_ago
    # moto itself says 2010 for every upload: what a test without the proxy would see.
    raw = direct.list_multipart_uploads(Bucket=_bucket())["Uploads"]
    assert {u["Initiated"].year for u in raw} == {2010}
