"""The wheel and sdist `python -m build` makes install into a clean venv, and the installed
`notify-worker` runs `--help` and the whole demo from outside the repository (so every file the
demo reads is package data). The wheel is built from the sdist, so installing it proves both.

Slow: building takes about 20 s (``built``, shared with the client package's test), the clean
install a few seconds from uv's cache (a minute or two when it downloads every dependency), the
demo about a minute."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.package_fixtures import XDIST_GROUP, clean_venv, run, uv_install

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(XDIST_GROUP)]

ROOT = Path(__file__).resolve().parents[2]


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
@pytest.mark.timeout(1200)  # a cold uv cache downloads every dependency
def test_a_clean_venv_installs_it_and_runs_help_and_the_demo(built, tmp_path):
    venv = tmp_path / "venv"
    python = clean_venv(venv)
    (wheel,) = built.glob("notify_worker-*.whl")
    (client,) = built.glob("notify_worker_client-*.whl")
    # The pinned versions (requirements*.txt) as constraints: the install proves the wheel's
    # metadata and package data, not the resolver.
    constraints = tmp_path / "constraints.txt"
    pins = [
        re.sub(r"\[[^]]*\]", "", line)
        for name in ("requirements.txt", "requirements-dev.txt")
        for line in (ROOT / name).read_text().splitlines()
        if "==" in line and not line.startswith("#")
    ]
    constraints.write_text("\n".join(pins) + "\n")
    uv_install(python, "-c", constraints, f"{wheel}[demo]", client)
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
