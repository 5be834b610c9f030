"""docker-compose.yml runs the same stack as the demo (no Docker engine here: check its shape,
and `docker compose config` when a compose client is installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def test_services_and_environment():
    config = yaml.safe_load(COMPOSE.read_text())
    services = config["services"]
    assert set(services) == {"redis", "s3", "bucket-init", "worker", "beat"}
    assert services["bucket-init"]["command"] == ["buckets", "create"]
    assert services["worker"]["command"][0] == "worker"
    assert services["beat"]["command"] == ["beat"]
    for name in ("bucket-init", "worker", "beat"):
        env = services[name]["environment"]
        assert env["S3_ENDPOINT_URL"] == "http://s3:5000"
        assert env["REDIS_URL"].startswith("redis://redis:6379")
    assert "noeviction" in services["redis"]["command"]


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="no docker-compose client")
def test_compose_config_validates():
    out = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def test_healthchecks_and_metrics_use_the_health_command():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert services["worker"]["healthcheck"]["test"] == [
        "CMD",
        "notify-worker",
        "health",
        "--liveness",
    ]
    assert services["beat"]["healthcheck"]["test"][-1] == "--readiness"
    for name in ("worker", "beat"):
        env = services[name]["environment"]
        assert env["NOTIFY_METRICS_HOST"] == "0.0.0.0" and int(env["NOTIFY_METRICS_PORT"])
        assert env["REDIS_URL"].startswith("redis://redis:6379")  # the shared settings kept
