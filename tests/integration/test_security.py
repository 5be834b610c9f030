"""Security (SPEC §2, §3, §6, §8): JSON only, AES256 everywhere, no secrets in any output,
formula-safe exports, least-privilege IAM.

Each test is built to fail if the guarded behaviour breaks: the pickle test would create a
directory if the worker ever unpickled; the SSE audit is itself tested against unencrypted
writes; the secret test greps every output of a run of every workflow.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import uuid

import pytest
from kombu import Connection, Queue

from tests.poison_tasks import MARK, POISON_QUEUE, mark_key
from tests.reliability_fixtures import ROOT, rel_workers_fixture, wait_for  # noqa: F401
from worker.app import app

pytestmark = pytest.mark.integration

# --- JSON only: a pickled message is refused by a real prefork worker ----------------------------


class _Hostile:
    """Unpickling this creates a directory: proof that the worker deserialised pickle."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _publish_pickle(task: str, kwargs: dict, embed: dict) -> str:
    task_id = str(uuid.uuid4())
    body = pickle.dumps(((), kwargs, embed))
    with Connection(app.conf.broker_url) as conn:
        conn.Producer().publish(
            body,
            routing_key=POISON_QUEUE,
            exchange=POISON_QUEUE,
            serializer=None,
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers={
                "task": task,
                "id": task_id,
                "lang": "py",
                "argsrepr": "()",
                "kwargsrepr": "{}",
            },
            declare=[Queue(POISON_QUEUE)],
        )
    return task_id


@pytest.mark.slow
def test_prefork_worker_refuses_a_pickled_message(rel_workers, redis_client, tmp_path):
    worker = rel_workers(queues=POISON_QUEUE, extra_args=["--include=tests.poison_tasks"])
    evil_dir = tmp_path / "unpickled"
    pickled, follow = f"pickle-{uuid.uuid4()}", f"json-{uuid.uuid4()}"
    _publish_pickle(MARK, {"marker": pickled}, {"callbacks": [_Hostile(str(evil_dir))]})
    # A JSON message behind it is processed: the worker moved past the pickle and is alive.
    result = app.send_task(MARK, kwargs={"marker": follow}, queue=POISON_QUEUE).get(timeout=60)
    assert result == {"status": "ok", "marker": follow}
    assert redis_client.get(mark_key(follow))
    assert redis_client.get(mark_key(pickled)) is None  # the pickled task never ran
    assert not evil_dir.exists()  # and its body was never unpickled
    log = worker.log()
    assert "ContentDisallowed" in log or "Refusing to deserialize" in log
    assert worker.process.poll() is None
    # Dropped, not left to be redelivered forever.
    assert redis_client.llen(POISON_QUEUE) == 0


# --- AES256 on every object: the suite's own audit really catches a missing SSE -----------------


def _sse_audit(request: pytest.FixtureRequest):
    """The ``s3`` fixture's teardown audit, from tests/conftest.py (loaded by pytest)."""
    for plugin in request.config.pluginmanager.get_plugins():
        audit = getattr(plugin, "assert_every_object_encrypted", None)
        if audit is not None:
            return audit
    pytest.fail("tests/conftest.py no longer has assert_every_object_encrypted")


def _write_put(client, bucket: str, key: str) -> None:
    client.put_object(Bucket=bucket, Key=key, Body=b"plain")


def _write_multipart(client, bucket: str, key: str) -> None:
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    part = client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"p")
    client.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )


def _write_copy(client, bucket: str, key: str) -> None:
    client.put_object(Bucket=bucket, Key=key + ".src", Body=b"s", ServerSideEncryption="AES256")
    client.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key + ".src"})


@pytest.mark.parametrize("write", [_write_put, _write_multipart, _write_copy])
def test_the_suite_audit_flags_an_unencrypted_object(s3, request, write):
    from storage.config import get_settings

    audit = _sse_audit(request)
    bucket = get_settings().bucket("letters-pdf")
    audit(s3)  # clean to start with
    write(s3, bucket, "2024-01-01/NOTIFY.PLAIN.D.2.C.20240101000000.PDF")
    try:
        with pytest.raises(AssertionError, match=r"NOTIFY\.PLAIN.*without ServerSideEncryption"):
            audit(s3)
    finally:
        for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])  # or the fixture's teardown fails


def test_the_suite_buckets_have_no_default_encryption(s3):
    """Else moto would encrypt a forgetful write and the audit could never fail."""
    from storage.config import get_settings

    bucket = get_settings().bucket("csv-upload")
    s3.put_object(Bucket=bucket, Key="probe", Body=b"x")
    try:
        assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="probe")
    finally:
        s3.delete_object(Bucket=bucket, Key="probe")


# --- least privilege: the policy the operators paste grants nothing beyond the buckets ----------

PRODUCTION_BUCKETS = {
    "S3_BUCKET_CSV_UPLOAD": "prod-csv",
    "S3_BUCKET_CONTACT_LIST_UPLOAD": "prod-contacts",
    "S3_BUCKET_LOGO_UPLOAD": "prod-logos",
    "S3_BUCKET_MOU": "prod-mou",
    "S3_BUCKET_TRANSIENT_UPLOADED_LETTERS": "prod-transient",
    "S3_BUCKET_PRECOMPILED_ORIGINALS_BACKUP_LETTERS": "prod-backups",
    "S3_BUCKET_LETTER_ATTACHMENTS": "prod-attachments",
    "S3_BUCKET_REPORT_REQUESTS_DOWNLOAD": "prod-reports",
    "S3_BUCKET_TEMPLATE_EMAIL_FILES": "prod-email-files",
    "S3_BUCKET_LETTERS_PDF": "prod-letters-pdf",
}
PROTECTED = {"prod-mou", "prod-backups", "prod-letters-pdf"}


def _policy_from_cli(env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "worker", "buckets", "policy"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_iam_policy_grants_nothing_beyond_the_configured_buckets():
    env = {**os.environ, "NOTIFY_ENVIRONMENT": "production", **PRODUCTION_BUCKETS}
    env.pop("S3_ENDPOINT_URL", None)
    policy = _policy_from_cli(env)
    names = set(PRODUCTION_BUCKETS.values())
    allowed = {f"arn:aws:s3:::{n}" for n in names} | {f"arn:aws:s3:::{n}/*" for n in names}
    seen: set[str] = set()
    deletable: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert not {"NotAction", "NotResource", "Principal", "NotPrincipal"} & set(statement)
        resources = statement["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        for resource in resources:
            assert resource in allowed, f"{resource} is not one of the configured buckets"
            seen.add(resource)
        for action in actions:
            assert action.startswith("s3:") and "*" not in action and "?" not in action, action
            assert action != "s3:HeadObject", "HEAD is authorised by s3:GetObject"
            assert not action.startswith(("s3:PutBucket", "s3:DeleteBucket", "s3:CreateBucket"))
            if action == "s3:DeleteObject":
                deletable.update(
                    r.removeprefix("arn:aws:s3:::").removesuffix("/*") for r in resources
                )
    assert seen == allowed  # every configured bucket, and nothing else
    assert not deletable & PROTECTED, f"protected buckets deletable: {deletable & PROTECTED}"


def test_iam_policy_refuses_to_guess_bucket_names_in_production():
    env = {**os.environ, "NOTIFY_ENVIRONMENT": "production", **PRODUCTION_BUCKETS}
    del env["S3_BUCKET_LETTERS_PDF"]
    out = subprocess.run(
        [sys.executable, "-m", "worker", "buckets", "policy"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode != 0
    assert "S3_BUCKET_LETTERS_PDF" in out.stderr
    assert "arn:aws:s3" not in out.stdout
