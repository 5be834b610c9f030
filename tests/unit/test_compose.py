"""docker-compose.yml runs the same stack as the demo (no Docker engine here: check its shape,
and `docker compose config` when a compose client is installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

yaml = pytest.importorskip("yaml")
COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def test_services_and_environment():
    config = yaml.safe_load(COMPOSE.read_text())
    services = {k: v for k, v in config["services"].items() if not v.get("profiles")}
    assert set(services) == {"redis", "s3", "bucket-init", "worker", "beat"}
    assert services["bucket-init"]["command"] == ["buckets", "create"]
    assert services["worker"]["command"][0] == "worker"
    assert services["beat"]["command"] == ["beat"]
    for name in ("bucket-init", "worker", "beat"):
        env = services[name]["environment"]
        assert env["S3_ENDPOINT_URL"] == "http://s3:5000"
        assert env["REDIS_URL"].startswith("redis://redis:6379")
    assert "noeviction" in services["redis"]["command"]


def test_ha_profile_primary_replica_sentinels_and_clients_through_them():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    ha = {name for name, service in services.items() if service.get("profiles") == ["ha"]}
    assert ha == {
        "redis-primary",
        "redis-replica",
        "sentinel-1",
        "sentinel-2",
        "sentinel-3",
        "worker-ha",
        "beat-ha",
    }
    replica = services["redis-replica"]["command"]
    at = replica.index("--replicaof")
    assert replica[at + 1 : at + 3] == ["redis-primary", "6379"]
    for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
        script = services[name]["command"][0]
        assert "sentinel monitor mymaster redis-primary 6379 2" in script
        assert script.rstrip().endswith("--sentinel")
    for name in ("worker-ha", "beat-ha"):
        env = services[name]["environment"]
        parts = env["REDIS_URL"].split(";")
        assert [urlsplit(p).netloc.split("@")[-1] for p in parts] == [
            "sentinel-1:26379",
            "sentinel-2:26379",
            "sentinel-3:26379",
        ]
        assert env["NOTIFY_REDIS_SENTINEL_MASTER"] == "mymaster"
        assert env["S3_ENDPOINT_URL"] == "http://s3:5000"


def _compose_client() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


@pytest.mark.skipif(_compose_client() is None, reason="no docker compose client")
def test_compose_ha_profile_config_validates():
    out = subprocess.run(
        [*_compose_client(), "-f", str(COMPOSE), "--profile", "ha", "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr


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
