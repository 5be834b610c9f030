"""The distributions, built once per session, and clean venvs, for the packaging tests
(test_wheel, test_client_package).

* ``built`` — the project's sdist and wheel (the wheel built from the sdist, so installing it
  proves both) and the client package's wheel, built from a copy of the tree so that the build's
  ``*.egg-info`` and ``build/`` are never written into the repository (other tests read it);
* ``clean_venv(path, python)`` / ``uv_install(venv, ...)`` — a venv with nothing in it and
  installs into it by uv (pinned in requirements-dev.txt): the same resolution as pip, from uv's
  cache in seconds where pip took minutes.

Both test modules are in one xdist group, so ``built`` is made once.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UV = Path(sys.executable).with_name("uv")
XDIST_GROUP = "packages"

# Never part of a distribution: version control, venvs, caches, earlier builds, demo runs.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venvs",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".import_linter_cache",
    ".notify-worker",
)


def run(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 1500
) -> subprocess.CompletedProcess[str]:
    """Run a command; fail the test with the end of its output when it fails."""
    out = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert out.returncode == 0, f"{args}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def clean_venv(path: Path, python: str | Path = sys.executable) -> Path:
    """A new venv at ``path`` with nothing installed; returns its python."""
    assert UV.exists(), f"{UV} missing: install requirements-dev.txt"
    run(UV, "venv", "-q", "--python", python, path, cwd=path.parent, timeout=120)
    return path / "bin" / "python"


def uv_install(python: Path, *args: str | Path, timeout: float = 900) -> None:
    """``pip install ARGS`` into the venv of ``python``, by uv."""
    run(UV, "pip", "install", "-q", "--python", python, *args, cwd=python.parent, timeout=timeout)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with notify_worker-*.tar.gz, notify_worker-*.whl, notify_worker_client-*.whl."""
    source = tmp_path_factory.mktemp("source") / "notify-worker"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    dist = tmp_path_factory.mktemp("dist")
    build = (sys.executable, "-m", "build", "--installer", "uv")
    run(*build, "--outdir", dist, ".", cwd=source)
    run(*build, "--wheel", "--outdir", dist, ".", cwd=source / "client")
    return dist
