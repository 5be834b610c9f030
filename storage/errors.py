"""Typed errors shared by every workflow, and the translation of botocore failures into them.

Two families matter to the task base class:

* ``TransientError`` — worth retrying with backoff (throttling, 5xx, dropped connections).
* everything else derived from ``NotifyError`` — bad input or a broken setup; retrying cannot help,
  so the task fails at once with ``error_code`` and ``error_message``.

Every message says what went wrong, where, and how to fix it, and never carries a secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)


class NotifyError(Exception):
    """Base of every error this project raises on purpose. Not retried."""

    code = "error"
    retryable = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def as_result(self) -> dict[str, str]:
        """The ``failed`` task result (docs/tasks.md)."""
        return {"status": "failed", "error_code": self.code, "error_message": self.message}


class InvalidInput(NotifyError):
    """The caller sent something we refuse (bad UUID, unknown postage, malformed params...)."""

    code = "invalid_input"


class ConfigurationError(NotifyError):
    """The process is set up wrongly (a missing env var, an unknown environment...)."""

    code = "configuration_error"


class TransientError(NotifyError):
    """Worth retrying: the same call may succeed a little later."""

    code = "transient_error"
    retryable = True


# --- S3 ---------------------------------------------------------------------------------------


class S3Error(NotifyError):
    """An S3 call failed for a reason that retrying will not fix."""

    code = "s3_error"

    def __init__(
        self, message: str, *, bucket: str | None = None, key: str | None = None, **kw
    ) -> None:
        super().__init__(message, **kw)
        self.bucket = bucket
        self.key = key


class S3CredentialsMissing(S3Error):
    code = "s3_no_credentials"


class S3AccessDenied(S3Error):
    code = "s3_access_denied"


class S3NoSuchBucket(S3Error):
    code = "s3_no_such_bucket"


class S3WrongRegion(S3Error):
    code = "s3_wrong_region"


class S3NotFound(S3Error):
    code = "s3_not_found"


class S3PreconditionFailed(S3Error):
    """An If-Match / If-None-Match condition did not hold: someone else changed the object."""

    code = "s3_precondition_failed"


class S3Transient(TransientError, S3Error):
    code = "s3_transient"


_THROTTLING = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
}
_TRANSIENT_CODES = _THROTTLING | {
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "OperationAborted",
}


def _where(bucket: str | None, key: str | None) -> str:
    if bucket and key:
        return f"s3://{bucket}/{key}"
    if bucket:
        return f"bucket {bucket!r}"
    return "S3"


# Network failures. The last two: the connection broke while a response body was being read,
# which botocore cannot retry (the body was already handed over); the whole step can be.
_CONNECTION_ERRORS = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
    IncompleteReadError,
    ResponseStreamingError,
)


def translate(
    exc: BaseException, *, bucket: str | None = None, key: str | None = None
) -> Exception:
    """Map a botocore exception to one of ours; anything unknown comes back unchanged."""
    where = _where(bucket, key)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return S3CredentialsMissing(
            f"No AWS credentials found while calling {where}. Fix: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, configure ~/.aws/credentials (or AWS_PROFILE), or run with "
            "an IAM role.",
            bucket=bucket,
            key=key,
        )
    if isinstance(exc, _CONNECTION_ERRORS):
        return S3Transient(
            f"Could not reach {where} ({type(exc).__name__}). Will retry; if it persists check "
            "S3_ENDPOINT_URL, AWS_REGION and the network.",
            bucket=bucket,
            key=key,
        )
    if not isinstance(exc, ClientError):
        return exc

    err = exc.response.get("Error", {})
    code = str(err.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    op = exc.operation_name
    if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
        return S3AccessDenied(
            f"Access denied on {where} during {op}. Fix: grant the worker's IAM role the "
            "actions in `notify-worker buckets policy` on this bucket (s3:ListBucket too: "
            "without it a missing key reads as 403), and check the bucket policy.",
            bucket=bucket,
            key=key,
        )
    if code == "NoSuchBucket":
        return S3NoSuchBucket(
            f"Bucket {bucket!r} does not exist (during {op}). Fix: create it with "
            "`notify-worker buckets create`, or set the bucket's env var to the right name.",
            bucket=bucket,
            key=key,
        )
    if code in (
        "PermanentRedirect",
        "301",
        "AuthorizationHeaderMalformed",
        "IllegalLocationConstraintException",
    ):
        region = err.get("Region") or exc.response.get("ResponseMetadata", {}).get(
            "HTTPHeaders", {}
        ).get("x-amz-bucket-region")
        hint = f" The bucket lives in {region}." if region else ""
        return S3WrongRegion(
            f"{where} is in another region than AWS_REGION (during {op}).{hint} Fix: set "
            "AWS_REGION to the bucket's region, or point the env var at a bucket in this region.",
            bucket=bucket,
            key=key,
        )
    if code in ("NoSuchKey", "404", "NotFound", "NoSuchUpload"):
        return S3NotFound(f"{where} not found (during {op}).", bucket=bucket, key=key)
    if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
        return S3PreconditionFailed(
            f"{where} changed while we worked on it (precondition failed during {op}).",
            bucket=bucket,
            key=key,
        )
    if code in _TRANSIENT_CODES or status >= 500 or status == 429:
        return S3Transient(
            f"S3 is busy or failing on {where} ({code or status} during {op}). Will retry.",
            bucket=bucket,
            key=key,
        )
    return S3Error(
        f"S3 refused {op} on {where}: {code} {err.get('Message', '')}".strip(),
        bucket=bucket,
        key=key,
    )


@contextmanager
def s3_errors(bucket: str | None = None, key: str | None = None) -> Iterator[None]:
    """Run a block of S3 calls, re-raising botocore failures as our typed errors."""
    try:
        yield
    except NotifyError:
        raise
    except Exception as exc:
        translated = translate(exc, bucket=bucket, key=key)
        if translated is exc:
            raise
        raise translated from exc
