"""The import contracts in pyproject.toml hold, and they do catch a broken layer or a circle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_project_keeps_its_import_contracts() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def _contracts_toml() -> str:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    # JSON strings and lists of strings are valid TOML too.
    lines = ["[tool.importlinter]", f"root_packages = {json.dumps(config['root_packages'])}"]
    for contract in config["contracts"]:
        lines.append("[[tool.importlinter.contracts]]")
        lines += [f"{name} = {json.dumps(value)}" for name, value in contract.items()]
    return "\n".join(lines) + "\n"


def _write(base: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


SKELETON = {
    "storage/__init__.py": "",
    "storage/client.py": "",
    "storage/settings.py": "",
    "worker/__init__.py": "",
    "worker/client.py": "import storage.settings\nimport notify_worker_client\n",
    "notify_worker_client/__init__.py": "",
    "worker/runtime/__init__.py": "",
    "worker/runtime/app.py": "import storage.client\n",
    "worker/runtime/base.py": "",
    "worker/cli/__init__.py": "import tasks.job\nimport worker.demo\n",
    "worker/backfill/__init__.py": "",
    "worker/demo/__init__.py": "import worker.local\n",
    "worker/local/__init__.py": "",
    "tasks/__init__.py": "",
    "tasks/job.py": "import worker.runtime.app\n",
}


def test_a_tree_that_keeps_the_rules_passes(tmp_path: Path) -> None:
    _write(tmp_path, {**SKELETON, "pyproject.toml": _contracts_toml()})
    result = _lint(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upward_import_a_client_loading_tasks_and_a_circle_are_all_refused(
    tmp_path: Path,
) -> None:
    _write(
        tmp_path,
        {
            **SKELETON,
            "pyproject.toml": _contracts_toml(),
            # the runtime reaching up into the tasks
            "worker/runtime/base.py": "import tasks.job\n",
            # the web app's client package loading the worker's Celery app
            "notify_worker_client/__init__.py": "import worker.runtime.app\n",
            # two storage modules importing each other
            "storage/client.py": "import storage.settings\n",
            "storage/settings.py": "import storage.client\n",
        },
    )
    result = _lint(tmp_path)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "Contracts: 0 kept, 3 broken." in out
    assert "worker.runtime.base -> tasks.job" in out
    assert "notify_worker_client is not allowed to import worker" in out
    assert "No cycles are allowed in storage" in out
