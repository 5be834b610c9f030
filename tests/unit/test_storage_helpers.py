"""The shared streaming helpers, on in-process moto."""

from __future__ import annotations

import pytest

from storage import copies, deletes, listing, objects
from storage.errors import S3NotFound, S3PreconditionFailed
from storage.settings import get_settings
from storage.upload import MultipartWriter


@pytest.fixture
def bucket(mock_s3):
    return get_settings().bucket("report-downloads")


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 1024])
def test_iter_lines_handles_every_newline_split(bucket, chunk_size):
    body = b"a,b\r\nc,d\ne,f\rg,h\r\n\r\nlast"
    objects.put_bytes(bucket, "lines.csv", body)
    lines = list(objects.iter_lines(bucket, "lines.csv", chunk_size=chunk_size))
    assert lines == [b"a,b", b"c,d", b"e,f", b"g,h", b"", b"last"]


def test_open_stream_is_pinned_to_the_etag(bucket):
    etag = objects.put_bytes(bucket, "x.csv", b"one")
    objects.put_bytes(bucket, "x.csv", b"two")
    with pytest.raises(S3PreconditionFailed):
        objects.open_stream(bucket, "x.csv", if_match=etag)


def test_head_missing_is_not_found(bucket):
    with pytest.raises(S3NotFound):
        objects.head(bucket, "nope")
    assert objects.head_or_none(bucket, "nope") is None


def test_put_sets_encryption_metadata_and_tags(bucket, mock_s3):
    objects.put_bytes(bucket, "t.csv", b"x", metadata={"a": "1"}, tags={"row-count": "3"})
    info = objects.head(bucket, "t.csv")
    assert info.server_side_encryption == "AES256"
    assert info.metadata == {"a": "1"}
    assert objects.get_tags(bucket, "t.csv") == {"row-count": "3"}


def test_put_if_none_match_refuses_to_replace(bucket):
    objects.put_bytes(bucket, "once.csv", b"x", if_none_match=True)
    with pytest.raises(S3PreconditionFailed):
        objects.put_bytes(bucket, "once.csv", b"y", if_none_match=True)


def test_replace_metadata_keeps_body_and_is_pinned(bucket):
    objects.put_bytes(bucket, "m.csv", b"body", metadata={"valid": "True"})
    info = objects.head(bucket, "m.csv")
    objects.replace_metadata(info, {**info.metadata, "processing_status": "finished"})
    after = objects.head(bucket, "m.csv")
    assert after.metadata == {"valid": "True", "processing_status": "finished"}
    assert b"".join(objects.iter_chunks(bucket, "m.csv")) == b"body"
    assert after.server_side_encryption == "AES256"


def test_small_write_is_one_put(bucket):
    with MultipartWriter(bucket, "small.csv", part_size=1024) as writer:
        writer.write(b"x" * 100)
    assert writer.result.parts == 0
    assert objects.head(bucket, "small.csv").size == 100


def test_large_write_is_multipart_and_encrypted(bucket):
    with MultipartWriter(bucket, "big.csv", part_size=1024, metadata={"kind": "k"}) as writer:
        for _ in range(50):
            writer.write(b"y" * 100)
    assert writer.result.parts == 5
    info = objects.head(bucket, "big.csv")
    assert info.size == 5000
    assert info.metadata == {"kind": "k"}
    assert info.server_side_encryption == "AES256"


def test_failure_aborts_the_upload(bucket):
    with pytest.raises(RuntimeError), MultipartWriter(bucket, "half.csv", part_size=1024) as w:
        w.write(b"z" * 5000)
        raise RuntimeError("source failed")
    assert objects.head_or_none(bucket, "half.csv") is None
    assert list(listing.iter_multipart_uploads(bucket)) == []


def test_multipart_completion_if_none_match(bucket):
    objects.put_bytes(bucket, "done.csv", b"first")
    writer = MultipartWriter(bucket, "done.csv", part_size=1024, if_none_match=True)
    writer.write(b"w" * 3000)
    with pytest.raises(S3PreconditionFailed):
        writer.close()
    writer.abort()
    assert b"".join(objects.iter_chunks(bucket, "done.csv")) == b"first"


def test_listing_pages_and_multipart_uploads(bucket, mock_s3):
    for i in range(25):
        objects.put_bytes(bucket, f"p/{i:03}", b"x")
    pages = list(listing.iter_pages(bucket, "p/", page_size=10))
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [o.key for o in listing.iter_objects(bucket, "p/")][:2] == ["p/000", "p/001"]
    mock_s3.create_multipart_upload(Bucket=bucket, Key="pending", ServerSideEncryption="AES256")
    assert [u.key for u in listing.iter_multipart_uploads(bucket)] == ["pending"]


def test_delete_keys_in_batches(bucket, mock_s3):
    keys = [f"d/{i}" for i in range(25)]
    for k in keys:
        objects.put_bytes(bucket, k, b"x")
    calls = []
    mock_s3.meta.events.register("before-call.s3.DeleteObjects", lambda **kw: calls.append(1))
    result = deletes.delete_keys(bucket, iter(keys), batch_size=10)
    assert sorted(result.deleted) == sorted(keys)
    assert result.errors == []
    assert len(calls) == 3
    assert list(listing.iter_objects(bucket, "d/")) == []


def test_delete_if_unchanged(bucket):
    etag = objects.put_bytes(bucket, "c", b"1")
    objects.put_bytes(bucket, "c", b"2")
    with pytest.raises(S3PreconditionFailed):
        deletes.delete_if_unchanged(bucket, "c", etag)
    assert objects.head_or_none(bucket, "c") is not None


def test_copy_keeps_tags_and_encrypts(bucket):
    dest = get_settings().bucket("letters-pdf")
    objects.put_bytes(bucket, "src", b"pdf", metadata={"a": "1"}, tags={"t": "v"})
    source = objects.head(bucket, "src")
    etag = copies.copy_object(source, dest, "dst", metadata={"a": "1", "source-etag": "e"})
    assert etag == source.etag
    copied = objects.head(dest, "dst")
    assert copied.metadata == {"a": "1", "source-etag": "e"}
    assert copied.server_side_encryption == "AES256"
    assert objects.get_tags(dest, "dst") == {"t": "v"}


def test_multipart_copy_above_threshold(bucket):
    dest = get_settings().bucket("letters-pdf")
    body = bytes(range(256)) * 40  # 10,240 bytes
    objects.put_bytes(bucket, "big", body, metadata={"m": "1"}, tags={"t": "v"})
    source = objects.head(bucket, "big")
    copies.copy_object(source, dest, "big-copy", multipart_threshold=1000, part_size=4096)
    assert b"".join(objects.iter_chunks(dest, "big-copy")) == body
    copied = objects.head(dest, "big-copy")
    assert copied.metadata == {"m": "1"}
    assert copied.server_side_encryption == "AES256"
    assert objects.get_tags(dest, "big-copy") == {"t": "v"}
