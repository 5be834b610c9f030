"""The wheel and sdist `python -m build` makes install into a clean venv, and the installed
`notify-worker` runs `--help` and the whole demo from outside the repository (so every file the
demo reads is package data). The wheel is built from the sdist, so installing it proves both.

Slow: building takes about a minute, and the clean install downloads every dependency (or takes
it from pip's cache)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 1500):
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


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", dist, ".", cwd=ROOT)
    run(sys.executable, "-m", "build", "--wheel", "--outdir", dist, ".", cwd=ROOT / "client")
    return dist


@pytest.mark.slow
def test_the_wheel_holds_the_code_and_its_data_and_no_tests(built):
    (wheel,) = built.glob("notify_worker-*.whl")
    assert list(built.glob("notify_worker-*.tar.gz"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "celeryconfig.py" in names
    assert "tasks/csv_batches/store/migrations/script.py.mako" in names
    assert any(n.startswith("worker/demo/") for n in names)
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Requires-Python: >=3.11" in text
    requires = [line for line in text.splitlines() if line.startswith("Requires-Dist: moto")]
    assert requires and all('extra == "demo"' in line for line in requires)  # never by default
    assert "s3transfer" not in text


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a cold pip cache downloads every dependency
def test_a_clean_venv_installs_it_and_runs_help_and_the_demo(built, tmp_path):
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    (wheel,) = built.glob("notify_worker-*.whl")
    (client,) = built.glob("notify_worker_client-*.whl")
    # The pinned versions (requirements*.txt) as constraints: the install proves the wheel's
    # metadata and package data, not pip's resolver (left free, it backtracks for minutes).
    constraints = tmp_path / "constraints.txt"
    pins = [
        re.sub(r"\[[^]]*\]", "", line)
        for name in ("requirements.txt", "requirements-dev.txt")
        for line in (ROOT / name).read_text().splitlines()
        if "==" in line and not line.startswith("#")
    ]
    constraints.write_text("\n".join(pins) + "\n")
    run(
        venv / "bin" / "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        "-c",
        constraints,
        f"{wheel}[demo]",
        client,
        cwd=tmp_path,
    )
    exe = venv / "bin" / "notify-worker"
    helped = run(exe, "--help", cwd=tmp_path)
    for command in ("demo", "worker", "beat", "buckets", "enqueue", "cleanup", "reports"):
        assert command in helped.stdout

    # From outside the repository, with nothing of the test rig: the demo's own Redis (nothing
    # answers at REDIS_URL), its embedded S3, its own worker.
    from worker.local.servers import free_port

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("S3_", "NOTIFY_", "AWS_", "REDIS_", "PYTHON"))
    }
    env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    demo = run(exe, "demo", "--workdir", tmp_path / "demo", cwd=tmp_path, env=env, timeout=600)
    assert "buckets 10 created and checked" in demo.stdout
    assert "CSV job (sms)" in demo.stdout and "ok: 4865 rows dispatched" in demo.stdout
    assert "problem:" not in demo.stdout


def test_the_demo_says_how_to_get_moto_when_it_is_missing(tmp_path):
    """Without moto (a production install) and without S3_ENDPOINT_URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "PYTHONPATH"))}
    # A stand-in package that fails to import exactly like a missing moto.
    fake = tmp_path / "fake"
    (fake / "moto").mkdir(parents=True)
    (fake / "moto" / "__init__.py").write_text("raise ImportError('No module named moto')\n")
    env["PYTHONPATH"] = str(fake)
    out = subprocess.run(
        [sys.executable, "-m", "worker", "demo", "--workdir", str(tmp_path / "d")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "pip install 'notify-worker[demo]'" in out.stdout + out.stderr
    assert "S3_ENDPOINT_URL" in out.stdout + out.stderr
    assert "Traceback" not in out.stderr
