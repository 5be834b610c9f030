"""The move core against in-process moto: every path, request counts, injected races/crashes.

moto ignores ``CopySourceIfMatch``, so the race tests prove that our own checks (the copy's
ETag, the ``IfMatch`` delete) keep the move exactly-once, not the server's leniency.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from storage.errors import InvalidInput, NotifyError, TransientError
from tasks.letters import moves
from tasks.letters.moves import LetterError, LetterRetry, move_letter
from tasks.letters.settings import LetterSettings
from tests.letters_fixtures import (
    DEST_KEY,
    SECRETS,
    FaultyClient,
    Killed,
    RequestLog,
    backup_bucket,
    exists,
    keys_in,
    letter_metadata,
    letters_bucket,
    pdf_body,
    put_letter,
    read,
    recorded,
    transient_bucket,
)


@pytest.fixture
def client(letters_s3) -> Iterator[Any]:
    """The shared client with empty letter buckets; its HTTP requests are in ``client.log``."""
    with recorded(letters_s3) as log:
        yield _Logged(letters_s3, log)


class _Logged:
    """The client, plus ``log`` (a botocore client refuses new attributes on itself)."""

    def __init__(self, client: Any, log: RequestLog) -> None:
        self._client = client
        self.log = log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def ops(client: Any) -> list[str]:
    return client.log.operations


def assert_no_secrets(value: object) -> None:
    text = repr(value)
    for secret in SECRETS:
        assert secret not in text


# --- the normal path ---------------------------------------------------------------------------


def test_moves_letter_with_metadata_tags_and_encryption(client):
    letter = put_letter(client)
    client.log.clear()

    result = move_letter(**letter.args(), client=client)

    assert result == {
        "status": "ok",
        "service_id": letter.service_id,
        "upload_id": letter.upload_id,
        "destination_key": DEST_KEY,
        "already_moved": False,
        "copied": True,
        "multipart": False,
        "backup_key": None,
        "size": len(letter.body),
    }
    assert_no_secrets(result)
    assert ops(client) == ["HeadObject", "HeadObject", "CopyObject", "DeleteObject"]
    assert not exists(client, transient_bucket(), letter.key)
    head = client.head_object(Bucket=letters_bucket(), Key=DEST_KEY)
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "application/pdf"
    assert head["ETag"] == letter.etag
    assert head["Metadata"] == {
        **letter.metadata,
        "source-etag": letter.etag,
        "source-size": str(len(letter.body)),
        "source-key": letter.key,
    }
    tags = client.get_object_tagging(Bucket=letters_bucket(), Key=DEST_KEY)["TagSet"]
    assert tags == [{"Key": "letter-kind", "Value": "precompiled"}]
    assert read(client, letters_bucket(), DEST_KEY) == letter.body


def test_second_run_finds_it_moved_with_two_requests(client):
    letter = put_letter(client)
    move_letter(**letter.args(), client=client)
    client.log.clear()

    result = move_letter(**letter.args(), client=client)

    assert result["status"] == "ok"
    assert result["already_moved"] is True
    assert result["copied"] is False
    assert ops(client) == ["HeadObject", "HeadObject"]
    assert keys_in(client, letters_bucket()) == [DEST_KEY]


def test_no_secrets_in_logs(client, caplog):
    caplog.set_level(logging.DEBUG)
    letter = put_letter(client)
    move_letter(**letter.args(), client=client)
    move_letter(**letter.args(), client=client)
    # Our own loggers (botocore's DEBUG lines are silenced by worker.runtime.logs.configure).
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("tasks", "storage"))]
    assert ours
    assert_no_secrets(ours)


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["invalid", "INVALID", " invalid "])
def test_invalid_letter_is_skipped_and_stays(client, status):
    letter = put_letter(client, status=status)
    client.log.clear()

    result = move_letter(**letter.args(), client=client)

    assert result["status"] == "skipped"
    assert result["reason"] == "letter_invalid"
    assert ops(client) == ["HeadObject"]
    head = client.head_object(Bucket=transient_bucket(), Key=letter.key)
    assert head["ETag"] == letter.etag
    assert head["Metadata"] == letter.metadata
    assert keys_in(client, letters_bucket()) == []


@pytest.mark.parametrize("status", [None, "", "pending", "validating"])
def test_letter_without_valid_status_is_not_moved(client, status):
    metadata = letter_metadata(None if status is None else status)
    letter = put_letter(client, metadata=metadata)

    with pytest.raises(LetterError) as caught:
        move_letter(**letter.args(), client=client)

    assert caught.value.code == "letter_not_validated"
    assert not caught.value.retryable
    assert exists(client, transient_bucket(), letter.key)
    assert keys_in(client, letters_bucket()) == []


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"service_id": "not-a-uuid"}, "invalid_id"),
        ({"upload_id": "../../etc"}, "invalid_id"),
        ({"upload_id": None}, "missing_argument"),
        ({"reference": "abc"}, "invalid_reference"),
        ({"reference": "A" * 33}, "invalid_reference"),
        ({"reference": ""}, "missing_argument"),
        ({"postage": "second-class"}, "invalid_postage"),
        ({"created_at": "last tuesday"}, "invalid_timestamp"),
        ({"created_at": None}, "missing_argument"),
        ({"backup": "yes"}, "invalid_backup"),
    ],
)
def test_bad_arguments_are_refused_before_any_s3_call(client, overrides, code):
    letter = put_letter(client)
    client.log.clear()

    with pytest.raises(InvalidInput) as caught:
        move_letter(**letter.args(**overrides), client=client)

    assert caught.value.code == code
    assert ops(client) == []


def test_both_missing_is_letter_not_found_and_not_retried(client):
    letter = put_letter(client)
    client.delete_object(Bucket=transient_bucket(), Key=letter.key)

    with pytest.raises(LetterError) as caught:
        move_letter(**letter.args(), client=client)

    assert caught.value.code == "letter_not_found"
    assert not caught.value.retryable
    result = caught.value.as_result()
    assert result["status"] == "failed"
    assert result["destination_key"] == DEST_KEY
    assert result["error_code"] == "letter_not_found"


def test_something_different_at_destination_is_refused_and_untouched(client):
    letter = put_letter(client)
    client.put_object(
        Bucket=letters_bucket(), Key=DEST_KEY, Body=b"another letter", ServerSideEncryption="AES256"
    )
    client.log.clear()

    with pytest.raises(LetterError) as caught:
        move_letter(**letter.args(), client=client)

    assert caught.value.code == "destination_conflict"
    assert ops(client) == ["HeadObject", "HeadObject"]
    assert read(client, letters_bucket(), DEST_KEY) == b"another letter"
    assert read(client, transient_bucket(), letter.key) == letter.body


def test_destination_recording_another_source_is_a_conflict(client):
    first = put_letter(client)
    move_letter(**first.args(), client=client)
    # A second upload claiming the same reference and created_at, different bytes.
    second = put_letter(client, body=pdf_body(seed="b"))

    with pytest.raises(LetterError) as caught:
        move_letter(**second.args(), client=client)

    assert caught.value.code == "destination_conflict"
    assert read(client, letters_bucket(), DEST_KEY) == first.body
    assert exists(client, transient_bucket(), second.key)


def test_source_gone_and_unrecorded_destination_is_a_conflict(client):
    letter = put_letter(client)
    client.put_object(
        Bucket=letters_bucket(), Key=DEST_KEY, Body=letter.body, ServerSideEncryption="AES256"
    )
    client.delete_object(Bucket=transient_bucket(), Key=letter.key)

    with pytest.raises(LetterError) as caught:
        move_letter(**letter.args(), client=client)

    assert caught.value.code == "destination_conflict"


def test_same_bytes_unrecorded_at_destination_are_recopied_with_the_record(client):
    letter = put_letter(client)
    client.put_object(
        Bucket=letters_bucket(), Key=DEST_KEY, Body=letter.body, ServerSideEncryption="AES256"
    )

    result = move_letter(**letter.args(), client=client)

    assert result["status"] == "ok"
    assert result["copied"] is True
    head = client.head_object(Bucket=letters_bucket(), Key=DEST_KEY)
    assert head["Metadata"]["source-etag"] == letter.etag
    assert not exists(client, transient_bucket(), letter.key)


# --- crashes and races -------------------------------------------------------------------------


def _die(_: dict) -> None:
    raise Killed


def _replacing(client: Any, letter: Any, body: bytes) -> Callable[[dict], None]:
    """A hook that uploads ``body`` over the letter's source: the web app racing the move."""

    def replace_source(_: dict) -> None:
        put_letter(client, service_id=letter.service_id, upload_id=letter.upload_id, body=body)

    return replace_source


def test_crash_between_copy_and_delete_then_rerun_finishes_once(client):
    letter = put_letter(client)
    faulty = FaultyClient(client, before={"delete_object": _die})
    with pytest.raises(Killed):
        move_letter(**letter.args(), client=faulty)
    assert exists(client, transient_bucket(), letter.key)
    assert exists(client, letters_bucket(), DEST_KEY)
    client.log.clear()

    result = move_letter(**letter.args(), client=client)

    assert result["status"] == "ok"
    assert result["already_moved"] is True
    assert ops(client) == ["HeadObject", "HeadObject", "DeleteObject"]
    assert not exists(client, transient_bucket(), letter.key)
    assert keys_in(client, letters_bucket()) == [DEST_KEY]
    assert read(client, letters_bucket(), DEST_KEY) == letter.body


@pytest.mark.parametrize("operation", ["head_object", "copy_object"])
def test_crash_before_the_copy_leaves_nothing_behind(client, operation):
    letter = put_letter(client)
    faulty = FaultyClient(client, before={operation: _die})
    with pytest.raises(Killed):
        move_letter(**letter.args(), client=faulty)
    assert keys_in(client, letters_bucket()) == []

    assert move_letter(**letter.args(), client=client)["already_moved"] is False
    assert keys_in(client, letters_bucket()) == [DEST_KEY]


def test_crash_after_delete_then_rerun_is_ok(client):
    letter = put_letter(client)
    faulty = FaultyClient(client, after={"delete_object": _die})
    with pytest.raises(Killed):
        move_letter(**letter.args(), client=faulty)

    result = move_letter(**letter.args(), client=client)

    assert result["status"] == "ok"
    assert result["already_moved"] is True


def test_source_replaced_between_head_and_copy_is_caught_by_our_etag_check(client):
    letter = put_letter(client)
    replacement = pdf_body(seed="replacement")
    replace_source = _replacing(client, letter, replacement)
    faulty = FaultyClient(client, before={"copy_object": replace_source})
    with pytest.raises(LetterRetry) as caught:
        move_letter(**letter.args(), client=faulty)

    # moto ignored CopySourceIfMatch and copied the replacement: our check saw it.
    assert "copy_object" in faulty.calls
    assert caught.value.code == "source_changed_during_copy"
    assert caught.value.retryable
    assert "delete_object" not in faulty.calls
    assert read(client, transient_bucket(), letter.key) == replacement

    # The retry re-reads the source and settles it: the replacement is moved, exactly once.
    result = move_letter(**letter.args(), client=client)
    assert result["status"] == "ok"
    assert not exists(client, transient_bucket(), letter.key)
    assert read(client, letters_bucket(), DEST_KEY) == replacement
    head = client.head_object(Bucket=letters_bucket(), Key=DEST_KEY)
    assert head["Metadata"]["source-etag"] == head["ETag"]


def test_source_replaced_between_copy_and_delete_is_kept(client):
    letter = put_letter(client)
    replacement = pdf_body(seed="late replacement")
    replace_source = _replacing(client, letter, replacement)
    faulty = FaultyClient(client, before={"delete_object": replace_source})
    with pytest.raises(LetterError) as caught:
        move_letter(**letter.args(), client=faulty)

    assert caught.value.code == "source_changed"
    assert not caught.value.retryable
    assert read(client, transient_bucket(), letter.key) == replacement  # IfMatch refused
    assert read(client, letters_bucket(), DEST_KEY) == letter.body


def test_copy_precondition_failure_as_real_s3_answers_is_retried(client):
    letter = put_letter(client)

    def refuse(_: dict) -> None:
        raise ClientError(
            {"Error": {"Code": "PreconditionFailed", "Message": "At least one..."}}, "CopyObject"
        )

    faulty = FaultyClient(client, before={"copy_object": refuse})
    with pytest.raises(LetterRetry) as caught:
        move_letter(**letter.args(), client=faulty)
    assert caught.value.code == "source_changed_during_copy"
    assert exists(client, transient_bucket(), letter.key)


def test_another_run_finishing_during_our_copy_means_ok(client):
    letter = put_letter(client)

    def other_run_moves_it(_: dict) -> None:
        move_letter(**letter.args(), client=client)

    faulty = FaultyClient(client, before={"copy_object": other_run_moves_it})
    result = move_letter(**letter.args(), client=faulty)

    assert result["status"] == "ok"
    assert result["already_moved"] is True
    assert keys_in(client, letters_bucket()) == [DEST_KEY]
    assert read(client, letters_bucket(), DEST_KEY) == letter.body


def test_another_run_deleting_first_means_ok(client):
    letter = put_letter(client)

    def other_run_moves_it(_: dict) -> None:
        move_letter(**letter.args(), client=client)

    faulty = FaultyClient(client, before={"delete_object": other_run_moves_it})
    result = move_letter(**letter.args(), client=faulty)

    assert result["status"] == "ok"
    assert not exists(client, transient_bucket(), letter.key)


# --- backup ------------------------------------------------------------------------------------


def test_backup_copies_the_original_first_and_is_idempotent(client):
    letter = put_letter(client)
    client.log.clear()

    result = move_letter(**letter.args(backup=True), client=client)

    backup_key = f"{letter.upload_id}.pdf"
    assert result["backup_key"] == backup_key
    assert ops(client) == [
        "HeadObject",  # source
        "HeadObject",  # destination
        "HeadObject",  # backup
        "CopyObject",  # backup
        "CopyObject",  # destination
        "DeleteObject",
    ]
    head = client.head_object(Bucket=backup_bucket(), Key=backup_key)
    assert head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"]["source-etag"] == letter.etag
    assert read(client, backup_bucket(), backup_key) == letter.body


def test_backup_made_before_a_crash_is_not_copied_again(client):
    letter = put_letter(client)
    faulty = FaultyClient(client, before={"delete_object": _die})
    with pytest.raises(Killed):
        move_letter(**letter.args(backup=True), client=faulty)
    client.log.clear()

    result = move_letter(**letter.args(backup=True), client=client)

    assert result["status"] == "ok"
    assert ops(client) == ["HeadObject", "HeadObject", "HeadObject", "DeleteObject"]


def test_different_backup_is_never_replaced(client):
    letter = put_letter(client)
    client.put_object(
        Bucket=backup_bucket(),
        Key=f"{letter.upload_id}.pdf",
        Body=b"an older original",
        ServerSideEncryption="AES256",
    )

    with pytest.raises(LetterError) as caught:
        move_letter(**letter.args(backup=True), client=client)

    assert caught.value.code == "backup_conflict"
    assert read(client, backup_bucket(), f"{letter.upload_id}.pdf") == b"an older original"
    assert exists(client, transient_bucket(), letter.key)
    assert keys_in(client, letters_bucket()) == []


# --- multipart copy ----------------------------------------------------------------------------


def test_large_letters_go_through_multipart_copy(client):
    settings = _multipart_settings()
    letter = put_letter(client, body=pdf_body(3000, seed="big"))
    client.log.clear()

    result = move_letter(**letter.args(), settings=settings, client=client)

    assert result["status"] == "ok"
    assert result["multipart"] is True
    assert ops(client) == [
        "HeadObject",
        "HeadObject",
        "GetObjectTagging",
        "CreateMultipartUpload",
        "UploadPartCopy",
        "UploadPartCopy",
        "UploadPartCopy",
        "CompleteMultipartUpload",
        "HeadObject",  # the check: size and record, since the ETag is the copy's own
        "DeleteObject",
    ]
    head = client.head_object(Bucket=letters_bucket(), Key=DEST_KEY)
    assert head["ETag"].endswith('-3"')
    assert head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"]["source-etag"] == letter.etag
    assert head["Metadata"]["filename"] == letter.metadata["filename"]
    assert client.get_object_tagging(Bucket=letters_bucket(), Key=DEST_KEY)["TagSet"]
    assert read(client, letters_bucket(), DEST_KEY) == letter.body
    assert not exists(client, transient_bucket(), letter.key)

    again = move_letter(**letter.args(), settings=settings, client=client)
    assert again["already_moved"] is True


def _multipart_settings() -> LetterSettings:
    return dataclasses.replace(
        LetterSettings.from_env(), multipart_threshold=2048, copy_part_size=1024
    )


def test_source_shrunk_during_multipart_copy_is_caught_and_not_deleted(client):
    letter = put_letter(client, body=pdf_body(3000, seed="big"))

    def shrink_source(_: dict) -> None:  # the last part's range is now past the end
        put_letter(
            client,
            service_id=letter.service_id,
            upload_id=letter.upload_id,
            body=pdf_body(2500, seed="other"),
        )

    faulty = FaultyClient(client, before={"upload_part_copy": shrink_source})
    with pytest.raises(LetterRetry) as caught:
        move_letter(**letter.args(), settings=_multipart_settings(), client=faulty)

    # moto copies the truncated range; the HEAD check after the copy sees the size differ.
    # (Real S3 refuses the part copy: CopySourceIfMatch, 412, source_changed_during_copy.)
    assert caught.value.code == "copy_mismatch"
    assert "delete_object" not in faulty.calls
    assert exists(client, transient_bucket(), letter.key)

    # The retry will not overwrite a copy it cannot vouch for, nor delete anything: it stops
    # with a clear conflict for an operator, and the letter is still in the transient bucket.
    with pytest.raises(LetterError) as again:
        move_letter(**letter.args(), settings=_multipart_settings(), client=client)
    assert again.value.code == "destination_conflict"
    assert exists(client, transient_bucket(), letter.key)


def test_copy_error_caused_by_a_replaced_source_is_retried(client):
    letter = put_letter(client, body=pdf_body(3000, seed="big"))

    def replace_then_refuse(_: dict) -> None:  # what real S3 answers past a shorter source
        put_letter(
            client,
            service_id=letter.service_id,
            upload_id=letter.upload_id,
            body=pdf_body(2500, seed="other"),
        )
        raise ClientError({"Error": {"Code": "InvalidRange", "Message": "-"}}, "UploadPartCopy")

    faulty = FaultyClient(client, before={"upload_part_copy": replace_then_refuse})
    with pytest.raises(LetterRetry) as caught:
        move_letter(**letter.args(), settings=_multipart_settings(), client=faulty)

    assert caught.value.code == "source_changed_during_copy"
    assert "abort_multipart_upload" in faulty.calls
    assert keys_in(client, letters_bucket()) == []
    assert move_letter(**letter.args(), settings=_multipart_settings(), client=client)["copied"]


def test_copy_error_with_an_unchanged_source_stands(client):
    letter = put_letter(client)

    def refuse(_: dict) -> None:
        raise ClientError({"Error": {"Code": "MetadataTooLarge", "Message": "-"}}, "CopyObject")

    faulty = FaultyClient(client, before={"copy_object": refuse})
    with pytest.raises(NotifyError) as caught:
        move_letter(**letter.args(), client=faulty)

    assert caught.value.code == "s3_error"
    assert not caught.value.retryable
    assert exists(client, transient_bucket(), letter.key)


def test_source_replaced_same_size_during_multipart_copy_is_never_deleted(client):
    # moto ignores CopySourceIfMatch on UploadPartCopy too, and a multipart copy's ETag cannot
    # be compared with the source's: here the IfMatch delete is what keeps the new version.
    letter = put_letter(client, body=pdf_body(3000, seed="big"))
    replacement = pdf_body(3000, seed="same size")
    replace_source = _replacing(client, letter, replacement)
    faulty = FaultyClient(client, before={"upload_part_copy": replace_source})
    with pytest.raises(LetterError) as caught:
        move_letter(**letter.args(), settings=_multipart_settings(), client=faulty)

    assert caught.value.code == "source_changed"
    assert read(client, transient_bucket(), letter.key) == replacement


def test_source_uploaded_in_parts_is_copied_whole_and_checked_by_head(client):
    letter = put_letter(client)  # then replaced by a two-part upload of the same key
    parts_body = pdf_body(1500, seed="p1") + pdf_body(1500, seed="p2")
    upload = client.create_multipart_upload(
        Bucket=transient_bucket(),
        Key=letter.key,
        Metadata=letter.metadata,
        ServerSideEncryption="AES256",
    )["UploadId"]
    parts = [
        {
            "PartNumber": n,
            "ETag": client.upload_part(
                Bucket=transient_bucket(),
                Key=letter.key,
                UploadId=upload,
                PartNumber=n,
                Body=parts_body[(n - 1) * 1500 : n * 1500],
            )["ETag"],
        }
        for n in (1, 2)
    ]
    client.complete_multipart_upload(
        Bucket=transient_bucket(),
        Key=letter.key,
        UploadId=upload,
        MultipartUpload={"Parts": parts},
    )
    client.log.clear()

    result = move_letter(**letter.args(), client=client)

    assert result["status"] == "ok"
    assert result["multipart"] is False
    assert ops(client) == ["HeadObject", "HeadObject", "CopyObject", "HeadObject", "DeleteObject"]
    assert read(client, letters_bucket(), DEST_KEY) == parts_body
    assert move_letter(**letter.args(), client=client)["already_moved"] is True


# --- settings ----------------------------------------------------------------------------------


def test_multipart_threshold_comes_from_the_environment(client):
    settings = LetterSettings.from_env(
        {"NOTIFY_LETTER_MULTIPART_THRESHOLD_BYTES": "1000", "NOTIFY_LETTER_COPY_PART_BYTES": "500"}
    )
    assert settings.multipart_threshold == 1000
    assert settings.copy_part_size == 500
    assert settings.transient_bucket == transient_bucket()


def test_multipart_threshold_above_copy_limit_is_a_configuration_error(client):
    with pytest.raises(NotifyError) as caught:
        LetterSettings.from_env({"NOTIFY_LETTER_MULTIPART_THRESHOLD_BYTES": str(6 * 1024**3)})
    assert caught.value.code == "configuration_error"


def test_transient_errors_are_retryable_refusals_are_not():
    move = moves.plan_move(
        "3f1c7d52-1111-4a4a-9b9b-000000000001",
        "3f1c7d52-1111-4a4a-9b9b-000000000002",
        "A1",
        "first",
        "2024-01-01T00:00:00Z",
    )
    assert isinstance(LetterRetry("x", code="y", move=move), TransientError)
    assert not LetterError("x", code="y", move=move).retryable
