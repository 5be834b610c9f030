"""The core's recovery paths on in-process moto: a repeat after a kill, and id conflicts."""

from __future__ import annotations

import uuid

import pytest

from storage.errors import InvalidInput
from storage.objects import get_tags, put_bytes
from tasks.reports.generate import generate_report
from tests.reports_fixtures import (
    OTHER_SERVICE,
    SERVICE,
    pending_uploads,
    read_report,
    report_bucket,
)

pytestmark = pytest.mark.usefixtures("report_plugins")


def new_id() -> str:
    return str(uuid.uuid4())


def expected_rows(count: int) -> list[list[str]]:
    return [["n", "name", "note"], *[[str(n), f"name-{n}", "x" * 40] for n in range(1, count + 1)]]


def test_a_run_killed_after_completing_gets_its_row_count_tag_on_the_repeat(mock_s3):
    request = new_id()
    key = f"synthetic_report/{request}.csv"
    body = b"n,name,note\r\n1,a,\r\n2,b,\r\n"
    put_bytes(report_bucket(), key, body, metadata={"service_id": SERVICE}, tags={"x": "1"})
    result = generate_report(request, SERVICE, "synthetic", {"rows": 9})
    assert (result["status"], result["rows"]) == ("skipped", 2)
    assert get_tags(report_bucket(), key) == {"x": "1", "row-count": "2"}


def test_a_run_killed_mid_upload_leaves_an_upload_the_next_run_clears(mock_s3):
    request = new_id()
    key = f"synthetic_report/{request}.csv"
    mock_s3.create_multipart_upload(Bucket=report_bucket(), Key=key, ServerSideEncryption="AES256")
    # moto reports every upload as started in 2010, so it counts as stale here.
    result = generate_report(request, SERVICE, "synthetic", {"rows": 300})
    assert result["status"] == "ok"
    assert read_report(key) == expected_rows(300)
    assert pending_uploads() == []


def test_a_report_id_used_by_another_service_is_refused(mock_s3):
    request = new_id()
    generate_report(request, OTHER_SERVICE, "synthetic", {"rows": 3})
    with pytest.raises(InvalidInput) as error:
        generate_report(request, SERVICE, "synthetic", {"rows": 3})
    assert error.value.code == "report_conflict"
