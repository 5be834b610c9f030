"""The kind registry, plug-in loading and params checks: bad input refused before any S3 call."""

from __future__ import annotations

import pytest

from storage.errors import ConfigurationError, InvalidInput
from tasks.reports import kinds
from tasks.reports.generate import generate_report
from tests.reports_fixtures import SERVICE, count_s3_calls, object_keys

REQUEST = "2b7c1e4a-9d3f-4a8b-b6e5-0f1a2c3d4e5f"
UPLOAD = "9a8b7c6d-5e4f-4321-8a9b-0c1d2e3f4a5b"


def test_builtin_kinds_are_the_four_of_the_spec():
    assert set(kinds.BUILTINS) == {"job-outcome", "uploads", "storage-usage", "notifications"}


def test_plugins_load_in_both_dotted_forms():
    spec = (
        "one=tests.plugins.report_sources:synthetic, "
        "two-words=tests.plugins.report_sources.dangerous,"
    )
    plugins = kinds.parse_sources(spec)
    assert set(plugins) == {"one", "two-words"}
    assert plugins["one"].check_params is not None  # the optional hook is picked up
    assert plugins["two-words"].check_params is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nokind", "should look like"),
        ("x=", "should look like"),
        ("Bad_Name=tests.plugins.report_sources:synthetic", "lower-case"),
        ("uploads=tests.plugins.report_sources:synthetic", "built-in"),
        ("x=no_such_module_here:f", "cannot load"),
        ("x=tests.plugins.report_sources:nope", "cannot load"),
        ("x=tests.plugins.report_sources:HEADER", "not callable"),
        ("x=justonename", "dotted path"),
        ("x=a.b:c,x=a.b:c", "cannot load"),
    ],
)
def test_bad_plugin_settings_are_configuration_errors_naming_the_variable(spec, message):
    with pytest.raises(ConfigurationError) as error:
        kinds.parse_sources(spec)
    assert "NOTIFY_REPORT_SOURCES" in error.value.message
    assert message in error.value.message


def test_a_kind_listed_twice_is_refused():
    spec = "x=tests.plugins.report_sources:synthetic,x=tests.plugins.report_sources:dangerous"
    with pytest.raises(ConfigurationError, match="twice"):
        kinds.parse_sources(spec)


@pytest.mark.usefixtures("report_plugins")
def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(InvalidInput) as error:
        kinds.get_kind("nope")
    assert error.value.code == "unknown_kind"
    assert "synthetic" in error.value.message and "uploads" in error.value.message
    assert kinds.get_kind("synthetic").name == "synthetic"


BAD_PARAMS = [
    ("job-outcome", {}),
    ("job-outcome", {"upload_id": "not-a-uuid"}),
    ("job-outcome", {"upload_id": UPLOAD, "extra": "1"}),
    ("uploads", {"from": "yesterday"}),
    ("uploads", {"from": 20260101}),
    ("uploads", {"from": "2026-02-01", "to": "2026-01-01"}),
    ("uploads", {"since": "2026-01-01"}),
    ("storage-usage", {"anything": "1"}),
    ("notifications", {"upload_id": "../../etc"}),
    ("notifications", ["not", "an", "object"]),
    ("synthetic", {"rows": "many"}),
]
BAD_IDS = [
    (REQUEST, SERVICE, "no-such-kind", "unknown_kind"),
    (REQUEST, SERVICE, "../etc", "unknown_kind"),
    (REQUEST, SERVICE, None, "unknown_kind"),
    ("not-a-uuid", SERVICE, "uploads", "invalid_id"),
    (REQUEST, "../x", "uploads", "invalid_id"),
]


@pytest.mark.usefixtures("report_plugins")
def test_bad_input_is_refused_before_any_s3_call(mock_s3):
    # One test for every case: each is quick, the S3 fixture is not.
    calls = count_s3_calls(mock_s3)
    for kind, params in BAD_PARAMS:
        with pytest.raises(InvalidInput) as error:
            generate_report(REQUEST, SERVICE, kind, params)
        assert error.value.code == "invalid_params", (kind, params)
    for request_id, service_id, kind, code in BAD_IDS:
        with pytest.raises(InvalidInput) as error:
            generate_report(request_id, service_id, kind, {})
        assert error.value.code == code, (request_id, service_id, kind)
    assert calls == []
    assert object_keys() == []


def test_good_params_are_normalised():
    checked = kinds.BUILTINS["uploads"].checked_params({"from": "2026-01-01", "to": None})
    assert checked == {"from": "2026-01-01T00:00:00+00:00"}
    assert kinds.BUILTINS["notifications"].checked_params(None) == {}
    assert kinds.BUILTINS["job-outcome"].checked_params({"upload_id": UPLOAD}) == {
        "upload_id": UPLOAD
    }


def test_part_size_below_the_s3_floor_is_refused_outside_tests(monkeypatch):
    from tasks.reports.settings import ReportSettings

    env = {"NOTIFY_ENVIRONMENT": "production", "NOTIFY_REPORT_PART_SIZE": "1024"}
    with pytest.raises(ConfigurationError, match="NOTIFY_REPORT_PART_SIZE"):
        ReportSettings.from_env(env)
    assert ReportSettings.from_env({"NOTIFY_ENVIRONMENT": "production"}).part_size >= 5 << 20
    assert ReportSettings.from_env({**env, "NOTIFY_ENVIRONMENT": "test"}).part_size == 1024


def test_a_broken_plugin_setting_is_logged_at_worker_start_not_fatal(monkeypatch, caplog):
    from tasks.reports.tasks import _load_report_plugins

    monkeypatch.setenv("NOTIFY_REPORT_SOURCES", "x=no_such_module_here:f")
    _load_report_plugins()
    assert "report plug-ins not loaded" in caplog.text
    assert "NOTIFY_REPORT_SOURCES" in caplog.text
