"""Security: JSON only, AES256 everywhere, no secrets in any output,
formula-safe exports, least-privilege IAM.

Each test is built to fail if the guarded behaviour breaks: the pickle test would create a
directory if the worker ever unpickled; the SSE audit is itself tested against unencrypted
writes; the secret test greps every output of a run of every workflow.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import secrets
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from kombu import Connection, Queue

from storage.keys import csv_upload_key, transient_letter_key
from storage.settings import get_settings
from tests.poison_tasks import MARK, POISON_QUEUE, mark_key
from tests.reliability_fixtures import ROOT, redis_text, wait_for
from worker.runtime import deadletter, queues
from worker.runtime.app import app

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
    from storage.settings import get_settings

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
    from storage.settings import get_settings

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


def _run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``notify-worker ARGS`` in a process of its own, with ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _buckets_policy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return _run_cli(env, "buckets", "policy")


def _policy_from_cli(env: dict[str, str]) -> dict:
    out = _buckets_policy(env)
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
    out = _buckets_policy(env)
    assert out.returncode != 0
    assert "S3_BUCKET_LETTERS_PDF" in out.stderr
    assert "arn:aws:s3" not in out.stdout


# --- one run of every workflow with secrets in the environment -----------------------------------

FORMULA_RECIPIENTS = ["=1+1", "+1 (555) 0100", "-5", "@SUM(A1)", "\t=2", "\r=3"]
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class WorkflowRun:
    """Everything a run of every workflow wrote that a person or a program could read."""

    secrets: list[str]
    private: list[str]  # recipients and personalisation: never in logs or CLI output
    logs: dict[str, str] = field(default_factory=dict)  # worker log by format
    cli: dict[str, str] = field(default_factory=dict)  # command -> stdout + stderr
    results: list[dict] = field(default_factory=list)
    deadletters: list[str] = field(default_factory=list)
    redis_dump: list[str] = field(default_factory=list)
    reports: dict[str, list[list[str]]] = field(default_factory=dict)
    bucket_operations: set[tuple[str, str]] = field(default_factory=set)


def _csv_with_formulas(marker: str) -> bytes:
    rows = [["phone number", "name"]]
    rows += [[f"07700 9{n:05d}", f"{marker}-{n}"] for n in range(1, 6)]
    rows += [[cell, f"{marker}-f{i}"] for i, cell in enumerate(FORMULA_RECIPIENTS)]
    rows += [["07700 900099", '=HYPERLINK("http://evil","x")']]
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


def _redis_values(url: str) -> list[str]:
    """Every key and value in a Redis database, as text (small databases only)."""
    return redis_text(redis.Redis.from_url(url))


def _cli(env: dict[str, str], *args: str) -> str:
    out = _run_cli(env, *args)
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def every_workflow(moto_endpoint, request, tmp_path_factory) -> WorkflowRun:
    """Every workflow through two real prefork workers (JSON and text logs) and the CLI, with
    a random AWS secret and a Redis password in their environment; the S3 traffic goes through
    the fault proxy (faults off) so its operations can be checked against the IAM policy."""
    from tasks.csv_batches import state as st
    from tests.csv_fixtures import WEB_APP_METADATA
    from tests.faults import FaultProxy
    from tests.plugins.report_sources import SOURCES as REPORT_PLUGINS
    from tests.reliability_fixtures import (
        audit_sse,
        fresh_s3,
        private_queue,
        start_worker,
        wipe_notify_state,
    )
    from worker.runtime.settings import get_worker_settings

    aws_secret = "AwsSecret" + secrets.token_hex(16)
    redis_password = "RedisPass" + secrets.token_hex(12)
    marker = "Zebedee" + secrets.token_hex(4)
    run = WorkflowRun(secrets=[aws_secret, redis_password], private=[marker, "7700900001"])
    s3 = fresh_s3(moto_endpoint)
    wipe_notify_state()
    settings = get_worker_settings()
    admin = redis.Redis.from_url(settings.redis_url)
    user = "notify-secret-test"
    admin.execute_command("ACL", "SETUSER", user, "on", f">{redis_password}", "~*", "&*", "+@all")
    parts = urlsplit(settings.redis_url)
    secret_url = urlunsplit(parts._replace(netloc=f"{user}:{redis_password}@{parts.netloc}"))
    proxy = FaultProxy(moto_endpoint, rate=0).start()
    tmp = tmp_path_factory.mktemp("secrets")
    env = {
        **os.environ,
        "REDIS_URL": secret_url,
        "AWS_SECRET_ACCESS_KEY": aws_secret,
        "S3_ENDPOINT_URL": proxy.url,
        "NOTIFY_REPORT_SOURCES": REPORT_PLUGINS,
        "NOTIFY_REPORT_PART_SIZE": "1024",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("NOTIFY_RESULT_BACKEND_URL", None)
    workers = {}
    try:
        for fmt in ("json", "text"):
            job_queue, sink_queue = private_queue("sec-job"), private_queue("sec-sink")
            worker_env = {
                **env,
                "NOTIFY_LOG_FORMAT": fmt,
                "NOTIFY_LOG_LEVEL": "DEBUG" if fmt == "text" else "INFO",
                "NOTIFY_ROW_SINK_QUEUE": sink_queue,
            }
            workers[fmt] = (
                start_worker(
                    worker_env,
                    tmp / f"worker-{fmt}.log",
                    concurrency=1,
                    queues=f"{job_queue},{sink_queue},{sink_queue}-bulk",
                ),
                job_queue,
            )
        service_id = str(uuid.uuid4())
        for fmt, (_worker, queue) in workers.items():
            upload_id, bad_upload_id = str(uuid.uuid4()), str(uuid.uuid4())
            csv_bucket = get_settings().bucket("csv-upload")
            s3.put_object(
                Bucket=csv_bucket,
                Key=csv_upload_key(service_id, upload_id),
                Body=_csv_with_formulas(marker),
                Metadata={**WEB_APP_METADATA, "original_file_name": "=cmd|' /C calc'!A0"},
                ServerSideEncryption="AES256",
            )
            s3.put_object(
                Bucket=csv_bucket,
                Key=csv_upload_key(service_id, bad_upload_id),
                Body=b"phone number,name\r\n07700 900123,Ren\xe9e " + marker.encode() + b"\r\n",
                Metadata=WEB_APP_METADATA,
                ServerSideEncryption="AES256",
            )
            letter_id = str(uuid.uuid4())
            s3.put_object(
                Bucket=get_settings().bucket("transient-letters"),
                Key=transient_letter_key(service_id, letter_id),
                Body=b"%PDF-1.7 " + marker.encode(),
                Metadata={
                    "status": "valid",
                    "recipient": f"{marker}%0A1%20Street",
                    "filename": marker,
                },
                ServerSideEncryption="AES256",
            )
            template = {"id": str(uuid.uuid4()), "type": "sms", "placeholders": ["name"]}
            job = {"service_id": service_id, "template": template}
            first = [
                (queues.CSV_PROCESS_BATCH, {**job, "upload_id": upload_id}),
                (queues.CSV_PROCESS_BATCH, {**job, "upload_id": bad_upload_id}),
                (
                    queues.LETTERS_MOVE_TRANSIENT,
                    {
                        "service_id": service_id,
                        "upload_id": letter_id,
                        "reference": f"SEC{fmt.upper()}1",
                        "postage": "first",
                        "created_at": "2024-05-01T12:00:00Z",
                        "backup": True,
                    },
                ),
                (
                    queues.LETTERS_MOVE_TRANSIENT,
                    {
                        "service_id": service_id,
                        "upload_id": str(uuid.uuid4()),
                        "reference": f"SEC{fmt.upper()}2",
                        "postage": "second",
                        "created_at": "2024-05-01T12:00:00Z",
                    },
                ),
                (queues.LETTERS_SWEEP_TRANSIENT, {}),
                (queues.CSV_RELEASE_DUE, {}),
                (queues.JOBS_RECONCILE, {}),
                (queues.CLEANUP_SWEEP, {"bucket": "transient-letters", "dry_run": False}),
                (queues.CLEANUP_SWEEP, {"bucket": "mou", "dry_run": False}),
            ]
            run.results += [
                app.send_task(name, kwargs=kwargs, queue=queue).get(timeout=120)
                for name, kwargs in first
            ]
            wait_for(lambda u=upload_id: st.read_progress(u)["stored"] >= 6, 60, what="rows stored")
            reports = {
                "job-outcome": {"upload_id": upload_id},
                "uploads": {},
                "notifications": {"upload_id": upload_id},
                "failing": {"after": 3},  # a broken plug-in: a traceback and a dead letter
            }
            for kind, params in reports.items():
                request_id = str(uuid.uuid4())
                kwargs = {
                    "report_request_id": request_id,
                    "service_id": service_id,
                    "kind": kind,
                    "params": params,
                }
                result = app.send_task(queues.REPORTS_GENERATE, kwargs=kwargs, queue=queue)
                value = result.get(timeout=120)
                run.results.append(value)
                if value["status"] == "ok":
                    body = s3.get_object(
                        Bucket=get_settings().bucket("report-downloads"), Key=value["key"]
                    )["Body"].read()
                    reader = csv.reader(io.StringIO(body.decode("utf-8"), newline=""))
                    run.reports[f"{kind}-{fmt}"] = list(reader)
            last_upload = upload_id

        cli_env = {**env, "NOTIFY_LOG_FORMAT": "json", "NOTIFY_LOG_LEVEL": "DEBUG"}
        for args in (
            ("status", "--json"),
            ("deadletter", "list"),
            ("deadletter", "list", "--json"),
            ("jobs", "show", last_upload, "--service-id", service_id),
            ("reports", "generate", "uploads", "--service-id", service_id),
            ("cleanup", "--bucket", "transient-letters", "--verbose"),
            ("buckets", "check"),
        ):
            run.cli[" ".join(args)] = _cli(cli_env, *args)
        unreachable = urlunsplit(
            parts._replace(netloc=f"{user}:{redis_password}@127.0.0.1:1", path="/0")
        )
        run.cli["status (Redis unreachable)"] = _cli(
            {**cli_env, "REDIS_URL": unreachable}, "status"
        )
    finally:
        for worker, _queue in workers.values():
            worker.stop()
        proxy.stop()
        admin.execute_command("ACL", "DELUSER", user)
    run.logs = {fmt: worker.log() for fmt, (worker, _queue) in workers.items()}
    raw = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    run.deadletters = list(raw.hvals(deadletter.DEADLETTER_KEY))
    run.redis_dump = _redis_values(settings.redis_url) + _redis_values(settings.result_backend_url)
    run.bucket_operations = set(proxy.bucket_operations)
    audit_sse(request, s3)
    yield run
    wipe_notify_state()


@pytest.mark.slow
def test_the_run_did_run_every_workflow(every_workflow):
    """Guard for the tests below: the run really went through every workflow and the paths
    that log most (a refusal, a file-level error, a traceback, a dead letter)."""
    codes = [r.get("error_code") for r in every_workflow.results]
    statuses = [r["status"] for r in every_workflow.results]
    assert statuses.count("ok") >= 16, every_workflow.results
    assert codes.count("not_utf8") == 2 and codes.count("letter_not_found") == 2
    assert codes.count("internal_error") == 2
    assert len(every_workflow.deadletters) == 2
    assert "Traceback" in every_workflow.logs["text"]
    assert '"level": "ERROR"' in every_workflow.logs["json"]
    for fmt in ("json", "text"):
        assert len(every_workflow.reports[f"job-outcome-{fmt}"]) == 1 + 12


@pytest.mark.slow
@pytest.mark.parametrize(
    "where", ["logs", "cli", "results", "deadletters", "redis_dump"], ids=lambda w: w
)
def test_no_secret_from_the_environment_appears_anywhere(every_workflow, where):
    found = getattr(every_workflow, where)
    texts = found.values() if isinstance(found, dict) else found
    blob = "\n".join(t if isinstance(t, str) else json.dumps(t) for t in texts)
    assert blob, f"nothing collected from {where}"
    for secret in every_workflow.secrets:
        assert secret not in blob, f"a secret leaked into {where}"


@pytest.mark.slow
@pytest.mark.parametrize("where", ["logs", "cli"])
def test_no_recipient_or_personalisation_in_logs_or_cli_output(every_workflow, where):
    blob = "\n".join(getattr(every_workflow, where).values())
    for private in every_workflow.private:
        assert private not in blob, f"recipient data in {where}"


@pytest.mark.slow
def test_exports_are_formula_safe(every_workflow):
    """Every cell starting with = + - @ tab or CR is neutralised with a leading apostrophe."""
    assert set(every_workflow.reports) >= {"job-outcome-json", "uploads-json", "notifications-json"}
    for name, records in every_workflow.reports.items():
        for record in records:
            for cell in record:
                assert not cell.startswith(FORMULA_PREFIXES), (name, cell)
    outcome = every_workflow.reports["job-outcome-json"]
    recipients = {record[1] for record in outcome[1:]}
    for planted in ("=1+1", "+1 (555) 0100", "-5", "@SUM(A1)"):
        assert "'" + planted in recipients, (planted, recipients)
    names = {record[1] for record in every_workflow.reports["uploads-json"][1:]}
    assert "'=cmd|' /C calc'!A0" in names


# S3 operation (as the proxy names it) -> the IAM actions it needs on that bucket's resource.
IAM_ACTIONS = {
    "HeadObject": ("s3:GetObject", "object"),
    "GetObject": ("s3:GetObject", "object"),
    "GetObjectTagging": ("s3:GetObjectTagging", "object"),
    "PutObject": ("s3:PutObject", "object"),
    "PutObjectTagging": ("s3:PutObjectTagging", "object"),
    "CopyObject": ("s3:PutObject", "object"),
    "CopySource": ("s3:GetObject", "object"),
    "CreateMultipartUpload": ("s3:PutObject", "object"),
    "UploadPart": ("s3:PutObject", "object"),
    "UploadPartCopy": ("s3:PutObject", "object"),
    "CompleteMultipartUpload": ("s3:PutObject", "object"),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", "object"),
    "ListParts": ("s3:ListMultipartUploadParts", "object"),
    "DeleteObject": ("s3:DeleteObject", "object"),
    "DeleteObjects": ("s3:DeleteObject", "object"),
    "ListObjectsV2": ("s3:ListBucket", "bucket"),
    "ListObjects": ("s3:ListBucket", "bucket"),
    "HeadBucket": ("s3:ListBucket", "bucket"),
    "ListMultipartUploads": ("s3:ListBucketMultipartUploads", "bucket"),
    "GetBucketLocation": ("s3:GetBucketLocation", "bucket"),
    "GetBucketEncryption": ("s3:GetEncryptionConfiguration", "bucket"),
    "GetBucketLifecycleConfiguration": ("s3:GetLifecycleConfiguration", "bucket"),
    "GetBucketVersioning": ("s3:GetBucketVersioning", "bucket"),
    "GetPublicAccessBlock": ("s3:GetBucketPublicAccessBlock", "bucket"),
    "GetBucketPolicy": ("s3:GetBucketPolicy", "bucket"),
    "ListObjectVersions": ("s3:ListBucketVersions", "bucket"),
}


@pytest.mark.slow
def test_workers_need_nothing_the_iam_policy_does_not_grant(every_workflow):
    """Every S3 call the run made (workers and CLI, seen by the proxy) is allowed by
    ``buckets policy``: least privilege that still works."""
    from storage.admin import iam_policy

    granted: set[tuple[str, str]] = set()
    for statement in iam_policy()["Statement"]:
        actions = statement["Action"]
        for action in [actions] if isinstance(actions, str) else actions:
            granted.add((action, statement["Resource"]))
    assert every_workflow.bucket_operations
    for bucket_name, operation in sorted(every_workflow.bucket_operations):
        action, level = IAM_ACTIONS[operation]
        resource = f"arn:aws:s3:::{bucket_name}" + ("/*" if level == "object" else "")
        assert (action, resource) in granted, f"{operation} on {bucket_name} needs {action}"


def test_demo_does_not_print_the_redis_password(redis_client):
    """The demo's first lines, on a Redis that needs a password (S3 unreachable, so the demo
    stops right after them)."""
    from worker.local.servers import free_port
    from worker.runtime.settings import get_worker_settings

    password = "RedisPass" + secrets.token_hex(12)
    user = "notify-demo-test"
    redis_client.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")
    try:
        parts = urlsplit(get_worker_settings().redis_url)
        url = urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc}"))
        env = {
            **os.environ,
            "REDIS_URL": url,
            "S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
            "NOTIFY_S3_MAX_ATTEMPTS": "1",
        }
        output = _cli(env, "demo")
    finally:
        redis_client.execute_command("ACL", "DELUSER", user)
    assert "Redis" in output, output  # it got as far as printing where Redis is
    assert password not in output
