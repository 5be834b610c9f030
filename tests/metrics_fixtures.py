"""Helpers for the metrics tests: scrape an exporter, run a real Prometheus, query it."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from worker.local.servers import free_port

PROMETHEUS = "/usr/bin/prometheus"


def scrape(port: int, host: str = "127.0.0.1") -> dict[tuple[str, tuple], float]:
    """Every sample of an exporter: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    samples: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    """Sum over every series of ``name`` whose labels include ``labels``."""
    return sum(
        v
        for (n, found), v in samples.items()
        if n == name and all((k, w) in found for k, w in labels.items())
    )


@contextmanager
def prometheus(workdir: Path, targets: dict[str, int]) -> Iterator[str]:
    """A real Prometheus scraping ``targets`` (job name -> port) every second; yields its URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = "".join(
        f"  - job_name: {name}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        for name, port in targets.items()
    )
    config = workdir / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{jobs}"
    )
    port = free_port()
    log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with suppress(OSError), urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((workdir / "prometheus.log").read_text()[-3000:])
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def query(url: str, promql: str) -> list[dict[str, Any]]:
    """An instant query; returns the result vector."""
    address = f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(address, timeout=10) as answer:  # noqa: S310
        body = json.loads(answer.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def query_value(url: str, promql: str) -> float | None:
    result = query(url, promql)
    return float(result[0]["value"][1]) if result else None


def wait_for_value(url: str, promql: str, expected: float, timeout: float = 30) -> float | None:
    """Poll until the query gives ``expected`` (Prometheus scrapes every second)."""
    deadline = time.monotonic() + timeout
    found = None
    while time.monotonic() < deadline:
        found = query_value(url, promql)
        if found == expected:
            return found
        time.sleep(0.5)
    return found
