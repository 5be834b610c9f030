"""Log lines carry the ids, as text or JSON, and nothing else leaks in."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest

from worker.runtime.logs import CONTEXT_FIELDS, configure, log_context


@pytest.fixture
def capture():
    """Install our handler on a string stream; restore the root logger afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()

    def setup(fmt: str = "json", level: str = "INFO") -> io.StringIO:
        configure(level, fmt, stream=stream)
        return stream

    yield setup
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_parse_and_carry_the_ids(capture):
    stream = capture("json")
    log = logging.getLogger("tasks.test")
    outer = log_context(task_id="t-1", task_name="notify.csv.process_batch", service_id="s-1")
    with outer, log_context(upload_id="u-1"):
        log.info("validated %d rows", 3)
    (line,) = lines(stream)
    assert line["message"] == "validated 3 rows"
    assert line["level"] == "INFO" and line["name"] == "tasks.test" and line["time"]
    assert {k: line[k] for k in CONTEXT_FIELDS} == {
        "task_id": "t-1",
        "task_name": "notify.csv.process_batch",
        "service_id": "s-1",
        "upload_id": "u-1",
    }


def test_context_nests_and_unwinds(capture):
    stream = capture("json")
    log = logging.getLogger("tasks.test")
    with log_context(task_id="outer", service_id="s-1"):
        with log_context(task_id="inner", upload_id="u-1"):
            log.info("inner")
        log.info("outer")
    log.info("none")
    inner, outer, none = lines(stream)
    assert (inner["task_id"], inner["service_id"], inner["upload_id"]) == ("inner", "s-1", "u-1")
    assert (outer["task_id"], outer["upload_id"]) == ("outer", "-")
    assert all(none[k] == "-" for k in CONTEXT_FIELDS)


def test_none_does_not_erase_an_outer_id(capture):
    stream = capture("json")
    with log_context(service_id="s-1"), log_context(service_id=None, upload_id=None):
        logging.getLogger("x").info("m")
    assert lines(stream)[0]["service_id"] == "s-1"


def test_context_is_not_shared_between_threads(capture):
    stream = capture("json")
    ready = threading.Event()
    done = threading.Event()

    def other() -> None:
        ready.wait(5)
        logging.getLogger("other").info("from the other thread")
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with log_context(task_id="mine"):
        ready.set()
        done.wait(5)
    thread.join(5)
    (line,) = lines(stream)
    assert line["task_id"] == "-"


def test_explicit_extra_fields_win(capture):
    stream = capture("json")
    with log_context(upload_id="from-context"):
        logging.getLogger("x").info("m", extra={"upload_id": "explicit"})
    assert lines(stream)[0]["upload_id"] == "explicit"


def test_text_format_has_the_ids(capture):
    stream = capture("text")
    with log_context(task_id="t-9", task_name="notify.letters.move_transient", upload_id="u-9"):
        logging.getLogger("tasks.letters").warning("skipped: invalid")
    text = stream.getvalue()
    assert (
        "WARNING tasks.letters [notify.letters.move_transient t-9 service=- upload=u-9 request=-]"
        in text
    )
    assert text.rstrip().endswith("skipped: invalid")


def test_configure_is_idempotent_and_keeps_boto_quiet(capture):
    capture("json", "DEBUG")
    capture("json", "DEBUG")
    root = logging.getLogger()
    assert len([h for h in root.handlers if getattr(h, "_notify", False)]) == 1
    # botocore logs request parameters at DEBUG: never let them through.
    assert logging.getLogger("botocore").level >= logging.WARNING


def test_exceptions_are_in_the_json_line(capture):
    stream = capture("json")
    try:
        raise ValueError("bad")
    except ValueError:
        with log_context(task_id="t"):
            logging.getLogger("x").exception("failed")
    line = lines(stream)[0]
    assert line["task_id"] == "t" and "ValueError: bad" in line["exc_info"]
