"""Redis over TLS with an ACL user: a real ``redis-server`` listening only on a TLS port, its
certificate signed by a CA the test makes, ``requirepass`` for the default user and an ACL
user for the project (``rediss://notify:…@127.0.0.1:port/0``, ``NOTIFY_REDIS_CA_FILE``).

* the whole CSV workflow runs through a real prefork worker: enqueued by the CLI, rows in the
  built-in sink (on the TLS Redis), outcome in S3;
* beat holds its lock and sends its ticks over TLS;
* a wrong CA, no CA, a wrong password: the worker refuses to start (exit 2) and the CLI
  says why, naming the host and never the password; a plain connection to the TLS port is
  refused too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import redis

from tests.csv_fixtures import SERVICE_ID, csv_text, head, job_kwargs, sms_rows, upload
from tests.redis_fixtures import cli, make_ca, make_tls_files, project_env, start_beat
from tests.reliability_fixtures import wait_for
from worker.local.servers import LocalRedis, start_redis_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN_PASSWORD = "tls-admin-Pw-4471"
USER, PASSWORD = "notify", "tls-notify-Pw-9083"


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory) -> tuple[LocalRedis, Path]:
    folder = tmp_path_factory.mktemp("tls-redis")
    files = make_tls_files(folder)
    server = start_redis_server(
        password=ADMIN_PASSWORD,
        tls=files,
        extra_args=["--user", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all"],
    )
    yield server, Path(files.ca_file)
    server.stop()


def tls_url(server: LocalRedis, password: str = PASSWORD, db: int = 0) -> str:
    return f"rediss://{USER}:{password}@127.0.0.1:{server.port}/{db}"


def tls_env(server: LocalRedis, ca_file: Path | str, **overrides: str) -> dict[str, str]:
    import os

    values = {"REDIS_URL": tls_url(server), "NOTIFY_REDIS_CA_FILE": str(ca_file), **overrides}
    return project_env(dict(os.environ), **values)


def admin(server: LocalRedis, ca_file: Path, db: int = 0) -> redis.Redis:
    return redis.Redis(
        "127.0.0.1",
        server.port,
        db=db,
        username=USER,
        password=PASSWORD,
        ssl=True,
        ssl_ca_certs=str(ca_file),
        decode_responses=True,
    )


def test_the_csv_workflow_runs_over_tls_with_an_acl_user(s3, tls_redis, rel_workers):
    server, ca_file = tls_redis
    env = tls_env(server, ca_file)
    overrides = {k: env[k] for k in ("REDIS_URL", "NOTIFY_REDIS_CA_FILE")}
    worker = rel_workers(concurrency=2, **overrides)
    rows = 2500
    upload_id = upload(s3, csv_text(["phone number", "name"], sms_rows(rows, bad_every=50)))
    ran = cli(
        env, "enqueue", "notify.csv.process_batch", json.dumps(job_kwargs(upload_id)), "--wait"
    )
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    valid = rows - rows // 50
    assert (result["status"], result["rows_dispatched"]) == ("ok", valid)

    state = admin(server, ca_file)
    sink = f"notify:notifications:{upload_id}"
    wait_for(lambda: state.hlen(sink) == valid, 60, 0.2, what="every valid row in the sink")
    assert state.hget(f"notify:job:{upload_id}", "status") == "finished"
    assert head(s3, upload_id, service_id=SERVICE_ID)["Metadata"]["processing_status"] == "finished"
    # Results went to the next database of the same TLS server.
    assert admin(server, ca_file, db=1).dbsize() > 0
    # The server saw only TLS clients of the ACL user: the worker's connections are there.
    clients = [c for c in state.client_list() if c.get("user") == USER]
    assert len(clients) >= 3
    assert PASSWORD not in worker.log() and ADMIN_PASSWORD not in worker.log()


def test_beat_holds_its_lock_over_tls(tls_redis, tmp_path, moto_endpoint):
    server, ca_file = tls_redis
    env = tls_env(server, ca_file, S3_ENDPOINT_URL=moto_endpoint)
    state = admin(server, ca_file)
    state.delete("notify:beat:lock")
    beat = start_beat(env, tmp_path / "beat.log")
    try:
        wait_for(lambda: state.get("notify:beat:lock"), 60, 0.2, what="beat's lock")
        # The schedule is in the TLS Redis, and ticks reach the broker there.
        wait_for(lambda: state.llen("periodic") > 0, 60, 0.2, what="a tick in the queue")
        assert any(k.startswith("notify:beat:") for k in state.scan_iter("notify:beat:*"))
    finally:
        beat.stop()
    assert PASSWORD not in beat.log()
    state.delete("periodic")


def _refused(result, server: LocalRedis, *words: str) -> str:
    text = result.stdout + result.stderr
    assert result.returncode == 2, text
    assert f"127.0.0.1:{server.port}" in text, text
    for word in words:
        assert word in text, text
    assert PASSWORD not in text and ADMIN_PASSWORD not in text
    return text


def test_a_wrong_ca_stops_the_worker_and_the_cli_naming_the_host(tls_redis, tmp_path):
    server, _ = tls_redis
    wrong_ca, _, _ = make_ca(tmp_path, "some-other-ca")
    env = tls_env(server, wrong_ca)
    worker = cli(env, "worker", "--concurrency=1", timeout=60)
    _refused(worker, server, "certificate", "NOTIFY_REDIS_CA_FILE")
    _refused(cli(env, "beat", timeout=60), server, "certificate")
    status = cli(env, "status", timeout=60)
    assert status.returncode != 0
    assert f"127.0.0.1:{server.port}" in status.stderr and PASSWORD not in status.stderr
    # Without NOTIFY_REDIS_CA_FILE the system CAs do not know the private CA either.
    env.pop("NOTIFY_REDIS_CA_FILE")
    _refused(cli(env, "worker", timeout=60), server, "certificate")


def test_a_wrong_password_stops_the_worker_naming_the_host(tls_redis):
    server, ca_file = tls_redis
    env = tls_env(server, ca_file, REDIS_URL=tls_url(server, password="not-the-Pw-1234"))
    text = _refused(cli(env, "worker", timeout=60), server, "refused the credentials")
    assert "not-the-Pw-1234" not in text
    # Celery started directly (no CLI in front) stops at its worker_init check too.
    import subprocess
    import sys

    direct = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker.runtime.app", "worker", "--pool=solo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = direct.stdout + direct.stderr
    assert direct.returncode == 2, output[-3000:]
    assert "refused the credentials" in output and f"127.0.0.1:{server.port}" in output
    assert "not-the-Pw-1234" not in output and PASSWORD not in output


def test_a_plain_url_to_the_tls_port_is_a_clear_error(tls_redis):
    server, ca_file = tls_redis
    plain = f"redis://{USER}:{PASSWORD}@127.0.0.1:{server.port}/0"
    env = tls_env(server, ca_file, REDIS_URL=plain)
    result = cli(env, "worker", timeout=60)
    text = result.stdout + result.stderr
    assert result.returncode == 2, text
    assert f"127.0.0.1:{server.port}" in text and PASSWORD not in text


@pytest.fixture
def tls_sentinels(tmp_path: Path):
    """A TLS-only primary and replica (replicating over TLS) and three TLS-only sentinels."""
    from tests.redis_fixtures import SentinelTopology

    (tmp_path / "tls").mkdir()
    topology = SentinelTopology(tmp_path / "redis", tls=make_tls_files(tmp_path / "tls")).start()
    yield topology
    topology.stop()


def test_sentinels_and_data_servers_over_tls(
    s3, tls_sentinels, rel_workers, tmp_path, moto_endpoint
):
    """``sentinel://`` with ``NOTIFY_REDIS_SENTINEL_TLS=1``: every server listens on a TLS port
    only, so each step below that works went over TLS. The state store (a round trip through
    the project's client), the broker and results (a CSV job enqueued by the CLI and waited
    for, run by a prefork worker) and RedBeat (its lock and a tick) all find the master through
    the sentinels."""
    import os

    from worker.runtime import redis_urls
    from worker.runtime.settings import WorkerSettings

    topology = tls_sentinels
    env = project_env(dict(os.environ), **topology.env(), S3_ENDPOINT_URL=moto_endpoint)
    settings = WorkerSettings.from_env(env)
    assert settings.sentinel_tls

    state = redis_urls.make_client(env["REDIS_URL"], settings)
    state.set("notify:tls-sentinel-probe", "1", ex=60)
    master = topology.server(topology.primary().port)
    assert master.get("notify:tls-sentinel-probe") == "1"
    redis_urls.check(settings)  # broker, results and state: every one reachable
    # The web app's client package, same URL and variables, its own code.
    from notify_worker_client import redis_urls as client_urls

    web = client_urls.make_client(env["REDIS_URL"], client_urls.RedisSettings.from_env(env))
    web.set("notify:tls-sentinel-client-probe", "2", ex=60)
    assert master.get("notify:tls-sentinel-client-probe") == "2"
    assert web.connection_pool.connection_class.__name__ == "SentinelManagedSSLConnection"

    # Without the flag the sentinels' TLS ports do not answer a plain client: refused at start.
    plain = {k: v for k, v in env.items() if k != "NOTIFY_REDIS_SENTINEL_TLS"}
    refused = cli(plain, "status")
    assert refused.returncode != 0
    assert topology.password not in refused.stdout + refused.stderr

    worker = rel_workers(concurrency=2, **topology.env())
    beat = start_beat(env, tmp_path / "beat.log")
    try:
        rows = 2500
        upload_id = upload(s3, csv_text(["phone number", "name"], sms_rows(rows, bad_every=50)))
        ran = cli(
            env, "enqueue", "notify.csv.process_batch", json.dumps(job_kwargs(upload_id)), "--wait"
        )
        assert ran.returncode == 0, ran.stderr
        valid = rows - rows // 50
        assert json.loads(ran.stdout)["rows_dispatched"] == valid
        sink = f"notify:notifications:{upload_id}"
        wait_for(lambda: master.hlen(sink) == valid, 60, 0.2, what="every valid row in the sink")
        assert master.hget(f"notify:job:{upload_id}", "status") == "finished"
        meta = head(s3, upload_id, service_id=SERVICE_ID)["Metadata"]
        assert meta["processing_status"] == "finished"
        wait_for(lambda: master.get("notify:beat:lock"), 60, 0.2, what="beat's lock")
        # A tick sent by beat and run by the worker (which consumes the periodic queue too).
        wait_for(
            lambda: re.search(r"Task notify\.jobs\.reconcile\[\S+\] succeeded", worker.log()),
            60,
            0.5,
            what="a periodic task run by the worker",
        )
        assert beat.process.poll() is None
    finally:
        beat.stop()
    for log in (worker.log(), beat.log()):
        assert topology.password not in log and topology.sentinel_password not in log
