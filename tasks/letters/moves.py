"""The core of ``notify.letters.move_transient``: move one transient letter, exactly once.

The normal path is four S3 requests:

1. HEAD the source: ETag, size and metadata (``status``).
2. HEAD the destination: absent; already holding this letter (its metadata records the
   source's ETag, size and key); or something else, which is refused with nothing touched.
3. CopyObject into the letters-PDF bucket: AES256, the source's metadata plus that record,
   tags copied, ``CopySourceIfMatch`` on the ETag read in 1. Then the copy is checked: a
   single-part copy's ETag must equal the source's (moto ignores ``CopySourceIfMatch``, so
   this check is what catches a source replaced between 1 and 3 there); a multipart copy is
   checked with one more HEAD.
4. DeleteObject on the source with ``IfMatch`` on the same ETag, so only the letter that was
   checked and copied is ever deleted.

A duplicate message or a worker killed at any line is harmless: a rerun finds the destination
holding the letter and only finishes the delete, or finds the source gone and the destination
holding it and reports ``ok``. No Redis state is needed: S3 itself records the progress.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

from storage.client import get_client
from storage.copies import copy_object
from storage.deletes import delete_if_unchanged
from storage.errors import (
    InvalidInput,
    NotifyError,
    S3Error,
    S3NotFound,
    S3PreconditionFailed,
    TransientError,
)
from storage.keys import letter_backup_key, letters_pdf_key, require_uuid, transient_letter_key
from storage.objects import ObjectInfo, head_or_none
from tasks.letters.settings import LetterSettings

logger = logging.getLogger(__name__)

# What a copy records about its source, in its own metadata (S3 lower-cases metadata keys).
SOURCE_ETAG = "source-etag"
SOURCE_SIZE = "source-size"
SOURCE_KEY = "source-key"

VALID = "valid"
INVALID = "invalid"


@dataclass(frozen=True)
class LetterMove:
    """A validated request: the ids and both keys, worked out before any S3 call."""

    service_id: str
    upload_id: str
    source_key: str
    destination_key: str
    backup: bool

    def result(self, status: str, **extra: Any) -> dict[str, Any]:
        """A task result: ids and keys only (never the recipient or the file name)."""
        return {
            "status": status,
            "service_id": self.service_id,
            "upload_id": self.upload_id,
            "destination_key": self.destination_key,
            **extra,
        }


class LetterError(NotifyError):
    """A refusal (not retried); the failed result carries the letter's ids and keys."""

    def __init__(self, message: str, *, code: str, move: LetterMove) -> None:
        super().__init__(message, code=code)
        self.move = move

    def as_result(self) -> dict[str, Any]:
        return self.move.result("failed", error_code=self.code, error_message=self.message)


class LetterRetry(TransientError):
    """Something moved under our feet; a retry re-reads everything and settles it."""

    def __init__(self, message: str, *, code: str, move: LetterMove) -> None:
        super().__init__(message, code=code)
        self.move = move

    def as_result(self) -> dict[str, Any]:
        return self.move.result("failed", error_code=self.code, error_message=self.message)


class Destination(enum.Enum):
    """What a HEAD of a copy's target says about it, compared with the source."""

    ABSENT = "absent"
    HOLDS = "holds"  # a copy of this very source, recorded as such
    SAME_CONTENT = "same-content"  # the same bytes, but not (or wrongly) recorded: recopy
    CONFLICT = "conflict"  # something different: never overwritten


def _required(value: object, name: str) -> object:
    if value is None or value == "":
        raise InvalidInput(f"{name} is required.", code="missing_argument")
    return value


def plan_move(
    service_id: object,
    upload_id: object,
    reference: object,
    postage: object,
    created_at: object,
    backup: object = False,
) -> LetterMove:
    """Validate every argument and build both keys; raises ``InvalidInput``, calls no S3."""
    service_id = require_uuid(_required(service_id, "service_id"), "service_id")
    upload_id = require_uuid(_required(upload_id, "upload_id"), "upload_id")
    _required(reference, "reference")
    _required(postage, "postage")
    _required(created_at, "created_at")
    if backup is None:
        backup = False
    if not isinstance(backup, bool):
        raise InvalidInput("backup must be true or false.", code="invalid_backup")
    return LetterMove(
        service_id=service_id,
        upload_id=upload_id,
        source_key=transient_letter_key(service_id, upload_id),
        destination_key=letters_pdf_key(reference, postage, created_at),  # type: ignore[arg-type]
        backup=backup,
    )


def letter_status(metadata: dict[str, str]) -> str | None:
    """The ``status`` metadata, normalised; None when missing."""
    raw = metadata.get("status")
    return raw.strip().lower() if isinstance(raw, str) and raw.strip() else None


def _single_part(etag: str) -> bool:
    # A multipart object's ETag is "<md5 of part md5s>-<parts>", not the MD5 of its bytes.
    return "-" not in etag


def classify_destination(existing: ObjectInfo | None, source: ObjectInfo) -> Destination:
    """Compare a copy's target (the destination or the backup) with the source."""
    if existing is None:
        return Destination.ABSENT
    meta = existing.metadata
    recorded = (
        meta.get(SOURCE_ETAG) == source.etag
        and meta.get(SOURCE_SIZE) == str(source.size)
        and meta.get(SOURCE_KEY) == source.key
    )
    comparable = _single_part(existing.etag) and _single_part(source.etag)
    same_bytes = existing.size == source.size and (not comparable or existing.etag == source.etag)
    if recorded and same_bytes:
        return Destination.HOLDS
    if comparable and same_bytes:
        return Destination.SAME_CONTENT
    return Destination.CONFLICT


def records_move(existing: ObjectInfo, move: LetterMove) -> bool:
    """Whether a destination says it is the copy of this move's source (source now gone)."""
    meta = existing.metadata
    return (
        meta.get(SOURCE_KEY) == move.source_key
        and bool(meta.get(SOURCE_ETAG))
        and meta.get(SOURCE_SIZE) == str(existing.size)
    )


def copy_metadata(source: ObjectInfo) -> dict[str, str]:
    """The source's metadata kept as is, plus the record that proves where the copy came from."""
    return {
        **source.metadata,
        SOURCE_ETAG: source.etag,
        SOURCE_SIZE: str(source.size),
        SOURCE_KEY: source.key,
    }


def move_letter(
    service_id: str,
    upload_id: str,
    reference: str,
    postage: str,
    created_at: str,
    backup: bool = False,
    *,
    settings: LetterSettings | None = None,
    client: Any = None,
) -> dict[str, Any]:
    """Move ``service-{sid}/{upload_id}.pdf`` to the letters-PDF bucket; safe to run twice.

    Returns ``ok`` (moved now or before: ``already_moved``) or ``skipped`` (``status=invalid``);
    raises ``InvalidInput`` / ``LetterError`` for refusals and ``LetterRetry`` when a retry
    will settle it.
    """
    move = plan_move(service_id, upload_id, reference, postage, created_at, backup)
    settings = settings or LetterSettings.from_env()
    client = client or get_client()

    source = head_or_none(settings.transient_bucket, move.source_key, client=client)
    if source is None:
        return _finish_source_gone(move, settings, client)
    status = letter_status(source.metadata)
    if status == INVALID:
        logger.info("letter has status=invalid: left in the transient bucket")
        return move.result("skipped", reason="letter_invalid", already_moved=False)
    if status != VALID:
        raise LetterError(
            "The transient letter has no status=valid metadata (not validated yet?); it was "
            "not moved. Validate it, then enqueue the move again.",
            code="letter_not_validated",
            move=move,
        )

    destination = head_or_none(settings.letters_bucket, move.destination_key, client=client)
    state = classify_destination(destination, source)
    if state is Destination.CONFLICT:
        raise LetterError(
            "A different object already exists at the destination key; nothing was touched. "
            "Check the reference and created_at of both letters.",
            code="destination_conflict",
            move=move,
        )
    copied = multipart = False
    try:
        backup_key = _ensure_backup(move, source, settings, client) if move.backup else None
        if state is not Destination.HOLDS:
            multipart = _copy_checked(
                source, settings.letters_bucket, move.destination_key, move, settings, client
            )
            copied = True
    except _SourceVanished:  # another run moved it while we were copying
        return _finish_source_gone(move, settings, client)
    _delete_source(source, move, client)
    logger.info(
        "letter moved to the letters-PDF bucket (copied=%s, multipart=%s, size=%d)",
        copied,
        multipart,
        source.size,
    )
    return move.result(
        "ok",
        already_moved=not copied,
        copied=copied,
        multipart=multipart,
        backup_key=backup_key,
        size=source.size,
    )


def _finish_source_gone(move: LetterMove, settings: LetterSettings, client: Any) -> dict:
    """The source is gone: ``ok`` if the destination is its recorded copy, else a refusal."""
    destination = head_or_none(settings.letters_bucket, move.destination_key, client=client)
    if destination is None:
        raise LetterError(
            "Letter not found: neither the transient letter nor the destination exists (was it "
            "never uploaded, already cleaned up, or sent with other reference/created_at?).",
            code="letter_not_found",
            move=move,
        )
    if not records_move(destination, move):
        raise LetterError(
            "The transient letter is gone and the destination holds an object that is not "
            "recorded as its copy; nothing was touched.",
            code="destination_conflict",
            move=move,
        )
    logger.info("letter already moved by an earlier run")
    return move.result("ok", already_moved=True, copied=False, multipart=False, backup_key=None)


def _ensure_backup(
    move: LetterMove, source: ObjectInfo, settings: LetterSettings, client: Any
) -> str:
    """Copy the original to ``letter-backups/{upload_id}.pdf`` unless it is already there."""
    key = letter_backup_key(move.upload_id)
    existing = head_or_none(settings.backup_bucket, key, client=client)
    state = classify_destination(existing, source)
    if state is Destination.HOLDS:
        return key
    if state is Destination.CONFLICT:
        # Backups are never replaced: a different original under this upload id needs a person.
        raise LetterError(
            "A different backup already exists for this upload id; the letter was not moved.",
            code="backup_conflict",
            move=move,
        )
    _copy_checked(source, settings.backup_bucket, key, move, settings, client)
    return key


class _SourceVanished(Exception):
    """The source disappeared during a copy: another run moved it (checked by the caller)."""


def _copy_checked(
    source: ObjectInfo,
    bucket: str,
    key: str,
    move: LetterMove,
    settings: LetterSettings,
    client: Any,
) -> bool:
    """Copy ``source`` to ``bucket``/``key`` and check that the copy is that letter.

    Returns whether multipart copy was used. Raises ``_SourceVanished`` when the source is
    gone, and ``LetterRetry`` when the copied bytes are not the letter that was read.
    """
    multipart = source.size > settings.multipart_threshold
    try:
        etag = copy_object(
            source,
            bucket,
            key,
            metadata=copy_metadata(source),
            multipart_threshold=settings.multipart_threshold,
            part_size=settings.copy_part_size,
            client=client,
        )
    except S3PreconditionFailed:  # real S3 honours CopySourceIfMatch
        raise _changed_during_copy(move) from None
    except S3NotFound:
        if head_or_none(source.bucket, source.key, client=client) is None:
            raise _SourceVanished from None
        raise LetterRetry(
            "The copy could not find the transient letter although it still exists; retrying.",
            code="source_gone_during_copy",
            move=move,
        ) from None
    except S3Error as error:
        if error.retryable:
            raise
        # E.g. a part range past the end of a shorter replacement: if the source changed,
        # that is the cause, and a retry re-reads it; otherwise the error stands.
        now = head_or_none(source.bucket, source.key, client=client)
        if now is None:
            raise _SourceVanished from None
        if now.etag != source.etag:
            raise _changed_during_copy(move) from None
        raise
    if multipart or not _single_part(source.etag):
        # A multipart copy has an ETag of its own: check size and record with a HEAD instead.
        copy = head_or_none(bucket, key, client=client)
        if classify_destination(copy, source) is not Destination.HOLDS:
            raise LetterRetry(
                "The copy does not match the transient letter (size or record differ); the "
                "source was not deleted. Retrying.",
                code="copy_mismatch",
                move=move,
            )
    elif etag != source.etag:
        raise _changed_during_copy(move)
    return multipart


def _changed_during_copy(move: LetterMove) -> LetterRetry:
    return LetterRetry(
        "The transient letter changed between reading and copying it, so the copy is not the "
        "letter that was checked; the source was not deleted. A retry re-reads it.",
        code="source_changed_during_copy",
        move=move,
    )


def _delete_source(source: ObjectInfo, move: LetterMove, client: Any) -> None:
    """Delete the source only while it still has the ETag that was copied."""
    try:
        delete_if_unchanged(source.bucket, source.key, source.etag, client=client)
    except S3NotFound:
        logger.info("transient letter already deleted by a concurrent run")
    except S3PreconditionFailed:
        raise LetterError(
            "The transient letter was replaced after it was copied: the destination holds the "
            "version that was checked, and the new version was left in the transient bucket "
            "for an operator to look at.",
            code="source_changed",
            move=move,
        ) from None
