"""The reference-check plug-in: loading by dotted path, batching, checking its answer."""

from __future__ import annotations

import pytest

from storage.errors import ConfigurationError, TransientError
from tasks.cleanup.reference import ReferenceCheck, ReferenceCheckFailed, load_reference_check
from tests.plugins import reference_check as fake


@pytest.fixture(autouse=True)
def _clean_fake():
    fake.REFERENCED.clear()
    fake.CALLS.clear()
    yield
    fake.REFERENCED.clear()
    fake.CALLS.clear()


def test_unset_means_no_check():
    assert load_reference_check({}) is None
    assert load_reference_check({"NOTIFY_REFERENCE_CHECK": "  "}) is None


@pytest.mark.parametrize(
    "path", ["tests.plugins.reference_check:check", "tests.plugins.reference_check.check"]
)
def test_loads_both_dotted_forms(path):
    check = load_reference_check({"NOTIFY_REFERENCE_CHECK": path})
    fake.REFERENCED.add("a")
    assert check("contact-list", ["a", "b"]) == {"a"}
    assert fake.CALLS == [("contact-list", 2)]


@pytest.mark.parametrize(
    "path",
    [
        "nowhere.at_all:check",
        "tests.plugins.reference_check:missing",
        "tests.plugins.reference_check:REFERENCED",
        "justaname",
    ],
)
def test_bad_paths_are_configuration_errors(path):
    with pytest.raises(ConfigurationError, match="NOTIFY_REFERENCE_CHECK"):
        load_reference_check({"NOTIFY_REFERENCE_CHECK": path})


def test_called_in_batches_of_at_most_1000():
    check = ReferenceCheck(fake.check, "fake")
    keys = [f"k{i}" for i in range(2500)]
    fake.REFERENCED.update({"k0", "k1999", "k2499"})
    assert check("email-attachments", keys) == {"k0", "k1999", "k2499"}
    assert fake.CALLS == [("email-attachments", 1000)] * 2 + [("email-attachments", 500)]


def test_keys_not_asked_about_are_ignored():
    check = ReferenceCheck(lambda purpose, keys: ["a", "zzz", 7], "fake")
    assert check("contact-list", ["a", "b"]) == {"a"}


@pytest.mark.parametrize("raw", [fake.broken, fake.wrong_type, lambda p, k: None])
def test_a_failing_check_fails_clearly(raw):
    with pytest.raises(ReferenceCheckFailed) as caught:
        ReferenceCheck(raw, "fake")("contact-list", ["a"])
    assert caught.value.code == "reference_check_failed"


def test_a_transient_failure_is_left_to_retry():
    def flaky(purpose, keys):
        raise TransientError("database busy")

    with pytest.raises(TransientError):
        ReferenceCheck(flaky, "fake")("contact-list", ["a"])
