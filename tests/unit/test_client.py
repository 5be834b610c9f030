"""The web app's client package (``client/``): arguments refused before anything is sent,
queues named explicitly with the deployment's prefix, the request id header, and names that
agree with the workers'."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from notify_worker_client import InvalidArgument, NotifyClient, names
from notify_worker_client import validation as check

SERVICE = str(uuid.uuid4())
UPLOAD = str(uuid.uuid4())
TEMPLATE = str(uuid.uuid4())


class Recorder:
    """A stand-in Celery app: keeps what ``send_task`` was given."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_task(self, name: str, **options: Any) -> str:
        self.sent.append({"name": name, **options})
        return "result"


def client(**options: Any) -> tuple[NotifyClient, Recorder]:
    app = Recorder()
    return NotifyClient(app, **options), app  # type: ignore[arg-type]


def csv_job(notify: NotifyClient, **kw: Any) -> Any:
    args = {"template_id": TEMPLATE, "template_type": "sms", "placeholders": ["name"]}
    return notify.process_csv(SERVICE, UPLOAD, **{**args, **kw})


# --- what is sent --------------------------------------------------------------------------------


def test_a_csv_job_goes_by_name_on_its_queue_as_json():
    notify, app = client()
    csv_job(notify, sender_id=TEMPLATE, request_id="req-1")
    [sent] = app.sent
    assert sent["name"] == "notify.csv.process_batch"
    assert sent["queue"] == "csv-batches" and sent["serializer"] == "json"
    assert sent["headers"] == {"notify_request_id": "req-1"}
    assert sent["kwargs"] == {
        "service_id": SERVICE,
        "upload_id": UPLOAD,
        "template": {"id": TEMPLATE, "type": "sms", "placeholders": ["name"]},
        "options": {
            "allow_international_sms": False,
            "allow_international_letters": False,
            "allow_sms_to_uk_landline": False,
        },
        "source": "csv-upload",
        "sender_id": TEMPLATE,
    }


def test_the_prefix_goes_on_every_queue_and_big_jobs_go_to_the_bulk_queue():
    notify, app = client(queue_prefix="preview-", bulk_threshold_rows=100)
    csv_job(notify, notification_count=100)
    csv_job(notify, notification_count=101)
    notify.cancel_csv_job(SERVICE, UPLOAD)
    notify.move_transient_letter(
        SERVICE, UPLOAD, reference="ABC123", postage="second", created_at="2026-12-01T10:00:00"
    )
    notify.generate_report(str(uuid.uuid4()), SERVICE, "uploads")
    notify.sweep_bucket("transient-letters")
    notify.reconcile_jobs()
    notify.send_by_name("notify.notifications.save_batch", {"batch": {"rows": []}})
    assert [(m["name"], m["queue"]) for m in app.sent] == [
        ("notify.csv.process_batch", "preview-csv-batches"),
        ("notify.csv.process_batch", "preview-csv-batches-bulk"),
        ("notify.csv.cancel", "preview-csv-batches"),
        ("notify.letters.move_transient", "preview-letters"),
        ("notify.reports.generate", "preview-reports"),
        ("notify.cleanup.sweep", "preview-cleanup"),
        ("notify.jobs.reconcile", "preview-periodic"),
        ("notify.notifications.save_batch", "preview-database-tasks"),
    ]
    assert all(m["headers"] is None for m in app.sent)  # no request id given: no header


def test_timestamps_are_sent_as_utc_text():
    notify, app = client()
    notify.sweep_bucket("logo", as_of=datetime(2026, 12, 1, 10, 0, 0, 123), max_deletions=5)
    notify.move_transient_letter(
        SERVICE, UPLOAD, reference="A1", postage="europe", created_at=datetime(2026, 12, 1, 9)
    )
    due = datetime.now(UTC) + timedelta(days=6, hours=23)
    csv_job(notify, scheduled_for=due.replace(tzinfo=None))  # naive means UTC
    sweep, letter, job = (m["kwargs"] for m in app.sent)
    assert sweep == {
        "bucket": "logo",
        "dry_run": True,
        "max_deletions": 5,
        "as_of": "2026-12-01T10:00:00Z",
    }
    assert letter["created_at"] == "2026-12-01T09:00:00Z" and letter["backup"] is False
    assert job["scheduled_for"] == check.isoformat(due)


def test_plug_in_report_kinds_are_accepted_when_named():
    notify, app = client(report_kinds=["synthetic"])
    notify.generate_report(str(uuid.uuid4()), SERVICE, "synthetic", {"rows": 5})
    assert app.sent[0]["kwargs"]["kind"] == "synthetic"
    with pytest.raises(InvalidArgument, match="kind"):
        client()[0].generate_report(str(uuid.uuid4()), SERVICE, "synthetic")


def test_a_broker_url_is_enough():
    notify = NotifyClient(broker_url="redis://127.0.0.1:1/0", queue_prefix="x-")
    assert notify.app.conf.task_serializer == "json" and notify.queue("letters") == "x-letters"


# --- what is refused -----------------------------------------------------------------------------

BAD_CALLS = [
    ("service_id", lambda c: c.cancel_csv_job("not-a-uuid", UPLOAD)),
    ("upload_id", lambda c: c.cancel_csv_job(SERVICE, "../etc/passwd")),
    ("template_id", lambda c: csv_job(c, template_id=42)),
    ("template_type", lambda c: csv_job(c, template_type="fax")),
    ("placeholders", lambda c: csv_job(c, placeholders="name")),
    ("placeholders", lambda c: csv_job(c, placeholders=[" "])),
    ("source", lambda c: csv_job(c, source="upload")),
    ("sender_id", lambda c: csv_job(c, sender_id="x")),
    ("allow_international_sms", lambda c: csv_job(c, allow_international_sms="yes")),
    ("scheduled_for", lambda c: csv_job(c, scheduled_for="tomorrow")),
    (
        "scheduled_for",
        lambda c: csv_job(c, scheduled_for=datetime.now(UTC) + timedelta(days=7, minutes=1)),
    ),
    ("notification_count", lambda c: csv_job(c, notification_count=-1)),
    ("notification_count", lambda c: csv_job(c, notification_count="12")),
    ("request_id", lambda c: csv_job(c, request_id="two\nlines")),
    ("request_id", lambda c: c.reconcile_jobs(request_id="")),
    ("reference", lambda c: letter(c, reference="abc")),
    ("reference", lambda c: letter(c, reference="A" * 33)),
    ("reference", lambda c: letter(c, reference="")),
    ("postage", lambda c: letter(c, postage="third")),
    ("created_at", lambda c: letter(c, created_at="01/12/2026")),
    ("created_at", lambda c: letter(c, created_at=None)),
    ("backup", lambda c: letter(c, backup="false")),
    ("kind", lambda c: c.generate_report(str(uuid.uuid4()), SERVICE, "everything")),
    ("report_request_id", lambda c: c.generate_report("r", SERVICE, "uploads")),
    ("params", lambda c: c.generate_report(str(uuid.uuid4()), SERVICE, "uploads", ["a"])),
    ("params", lambda c: c.generate_report(str(uuid.uuid4()), SERVICE, "uploads", {1: "a"})),
    ("params", lambda c: c.generate_report(str(uuid.uuid4()), SERVICE, "uploads", {"a": {1}})),
    ("bucket", lambda c: c.sweep_bucket("notify-csv-upload")),
    ("dry_run", lambda c: c.sweep_bucket("logo", dry_run=None)),
    ("max_deletions", lambda c: c.sweep_bucket("logo", max_deletions=0)),
    ("as_of", lambda c: c.sweep_bucket("logo", as_of="yesterday")),
    ("name", lambda c: c.send_by_name("notify.csv.everything", {})),
    ("kwargs", lambda c: c.send_by_name("notify.jobs.reconcile", {"x": object()})),
]


def letter(notify: NotifyClient, **kw: Any) -> Any:
    args = {"reference": "ABC123", "postage": "first", "created_at": "2026-12-01T10:00:00Z"}
    return notify.move_transient_letter(SERVICE, UPLOAD, **{**args, **kw})


@pytest.mark.parametrize(("argument", "call"), BAD_CALLS, ids=[a for a, _ in BAD_CALLS])
def test_bad_arguments_are_refused_before_anything_is_sent(argument, call):
    notify, app = client()
    with pytest.raises(InvalidArgument) as caught:
        call(notify)
    assert caught.value.argument == argument
    assert str(caught.value).startswith(f"{argument}: ")
    assert isinstance(caught.value, ValueError)
    assert app.sent == []


def test_bad_settings_are_refused():
    with pytest.raises(InvalidArgument, match="queue_prefix"):
        client(queue_prefix="bad prefix")
    with pytest.raises(InvalidArgument, match="bulk_threshold_rows"):
        client(bulk_threshold_rows=0)
    with pytest.raises(InvalidArgument, match="app"):
        NotifyClient()


def test_a_refused_job_is_not_recorded_as_queued():
    class NoRedis:
        def pipeline(self):
            raise AssertionError("nothing may be written")

    notify, app = client(state_redis=NoRedis())
    with pytest.raises(InvalidArgument):
        csv_job(notify, request_id="bad id")
    assert app.sent == []


# --- the same contract on both sides -------------------------------------------------------------


def test_task_and_queue_names_agree_with_the_workers():
    from worker.runtime import queues

    for attribute, base in queues.BASE_QUEUES.items():
        assert getattr(names, attribute) == base
    for attribute in (
        "CSV_PROCESS_BATCH",
        "CSV_CANCEL",
        "CSV_RELEASE_DUE",
        "LETTERS_MOVE_TRANSIENT",
        "LETTERS_SWEEP_TRANSIENT",
        "REPORTS_GENERATE",
        "CLEANUP_SWEEP",
        "JOBS_RECONCILE",
        "NOTIFICATIONS_SAVE_BATCH",
        "REQUEST_ID_HEADER",
        "BULK_SUFFIX",
    ):
        assert getattr(names, attribute) == getattr(queues, attribute), attribute
    # Every task the web app may send goes to the same queue on both sides (the workers may
    # have internal tasks of their own besides).
    for task, queue in names.TASK_QUEUES.items():
        assert queues.TASK_QUEUES[task] == queues.prefixed(queue), task


def test_argument_values_agree_with_the_workers():
    from storage.buckets import PURPOSES
    from storage.keys import POSTAGE_CLASSES
    from tasks.reports.kinds import BUILTINS

    assert names.BUCKET_PURPOSES == PURPOSES
    assert tuple(POSTAGE_CLASSES) == names.POSTAGE_CLASSES
    assert tuple(BUILTINS) == names.REPORT_KINDS


@pytest.mark.parametrize(
    "prefix", ["", "x-", "preview.", "pr_12-", "a" * 64, "a b", "é-", "a" * 65]
)
def test_both_sides_accept_the_same_queue_prefixes(prefix):
    from storage.errors import ConfigurationError
    from worker.runtime.queues import queue_prefix

    try:
        check.queue_prefix(prefix)
        client_accepts = True
    except InvalidArgument:
        client_accepts = False
    try:
        queue_prefix({"NOTIFY_QUEUE_PREFIX": prefix})
        workers_accept = True
    except ConfigurationError:
        workers_accept = False
    assert client_accepts == workers_accept


def test_the_workers_prefix_their_queues_and_sink(monkeypatch):
    from worker.runtime import queues
    from worker.runtime.settings import WorkerSettings

    env = {"NOTIFY_QUEUE_PREFIX": "x-", "NOTIFY_ROW_SINK_QUEUE": "api-tasks"}
    assert WorkerSettings.from_env(env).row_sink_queue == "x-api-tasks"
    assert queues.prefixed("letters", "x-") == "x-letters"
    assert queues.prefixed("letters", "") == "letters"
    # Always in front, even of a name that happens to start like the prefix.
    assert queues.prefixed("database-tasks", "data") == "datadatabase-tasks"
