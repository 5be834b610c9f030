"""The Prometheus alert rules: valid (promtool check rules) and behaving as their unit tests
say (promtool test rules). Every alert has a runbook section in docs/observability.md."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Skipped where promtool is missing, except in CI (which installs it): there it must run.
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not IN_CI, reason="needs Debian's prometheus package"
)


@needs_promtool
def test_rules_are_valid():
    done = subprocess.run(
        [PROMTOOL, "check", "rules", "alerts.yml"], cwd=RULES, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_rules_pass_their_unit_tests():
    done = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=RULES, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_tested_and_has_a_runbook():
    rules = (RULES / "alerts.yml").read_text()
    tests = (RULES / "alerts_test.yml").read_text()
    doc = (ROOT / "docs" / "observability.md").read_text().lower()
    alerts = re.findall(r"- alert: (\w+)", rules)
    assert len(alerts) >= 7
    for name in alerts:
        assert f"alertname: {name}" in tests, name
        assert f'<a id="{name.lower()}"></a>' in doc or f"### {name.lower()}" in doc, name
