"""Finished reports and leftovers of killed runs: row counts, tag repair, stale uploads."""

from __future__ import annotations

from datetime import timedelta

from storage.client import get_client
from storage.listing import iter_multipart_uploads
from storage.objects import get_tags, head, put_bytes
from tasks.reports.existing import abort_stale_uploads, count_rows, existing_row_count
from tests.reports_fixtures import pending_uploads, report_bucket

BODY = b'n,text\r\n1,"two\r\nlines"\r\n2,plain\r\n3,""\r\n'


def test_rows_are_counted_as_csv_records_not_lines(mock_s3):
    put_bytes(report_bucket(), "c_report/a.csv", BODY)
    assert count_rows(head(report_bucket(), "c_report/a.csv")) == 3


def test_a_missing_row_count_tag_is_counted_and_set_keeping_other_tags(mock_s3):
    bucket = report_bucket()
    put_bytes(bucket, "c_report/a.csv", BODY, tags={"expire-after-days": "7"})
    info = head(bucket, "c_report/a.csv")
    assert existing_row_count(info) == 3
    assert get_tags(bucket, "c_report/a.csv") == {"expire-after-days": "7", "row-count": "3"}
    assert existing_row_count(info) == 3  # now from the tag


def test_only_stale_uploads_of_exactly_this_key_are_aborted(mock_s3):
    bucket, client = report_bucket(), get_client()
    for key in ("s_report/a.csv", "s_report/a.csv", "s_report/a.csvx"):
        client.create_multipart_upload(Bucket=bucket, Key=key, ServerSideEncryption="AES256")
    started = max(u.initiated for u in iter_multipart_uploads(bucket))

    # Younger than the limit: a run may still be working on it.
    assert abort_stale_uploads(bucket, "s_report/a.csv", timedelta(hours=1), now=started) == 0
    assert len(pending_uploads()) == 3

    later = started + timedelta(hours=2)
    assert abort_stale_uploads(bucket, "s_report/a.csv", timedelta(hours=1), now=later) == 2
    assert pending_uploads() == ["s_report/a.csvx"]
