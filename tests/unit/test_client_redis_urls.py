"""The client's Redis URLs follow the workers' rules: the same three forms, the same variables,
no password in any message (notify_worker_client.redis_urls; it imports nothing of ours, and
the workers' module builds on its parser)."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest
import redis
import redis.sentinel
from notify_worker_client import NotifyClient
from notify_worker_client import redis_urls as client_urls
from notify_worker_client.validation import InvalidArgument

from storage.errors import ConfigurationError
from worker.runtime import redis_urls as worker_urls

SENTINEL_URL = (
    "sentinel://:data-Pw-1@10.0.0.1:26379;sentinel://10.0.0.2;sentinel://10.0.0.3:26380/2"
)

URLS = [
    "redis://127.0.0.1:6379/0",
    "redis://user:Pw-9@cache.internal:6380/3",
    "rediss://:Pw-9@redis.example.com/1",
    SENTINEL_URL,
    "sentinel://s1:26379",
]


@pytest.mark.parametrize("url", URLS)
def test_the_client_reads_a_url_as_the_workers_do(url):
    ours, theirs = client_urls.parse(url), worker_urls.parse(url)
    assert isinstance(theirs, client_urls.RedisTarget)  # one parser, the client's
    assert (ours.scheme, ours.hosts, ours.db, ours.username, ours.password) == (
        theirs.scheme,
        theirs.hosts,
        theirs.db,
        theirs.username,
        theirs.password,
    )
    assert client_urls.celery_url(url) == worker_urls.celery_url(theirs)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "http://h:1/0",
        "redis://:Secret-77@h:1/x",
        "redis://:Secret-77@h:1;redis://h2:1/0",
        "sentinel://:Secret-77@h:1;redis://h2:1/0",
    ],
)
def test_a_bad_url_is_refused_without_its_password(url):
    with pytest.raises(InvalidArgument) as caught:
        client_urls.parse(url)
    assert "Secret-77" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "it is empty"),
        ("http://h:1/0", "unknown scheme 'http'"),
        ("redis://:Secret-77@/0", "no host"),
        ("redis://h/x", "bad database number 'x'"),
        ("redis://h/-1", "bad database number '-1'"),
        ("redis://h/\u00b2", "bad database number '\u00b2'"),  # a digit int() refuses
        ("redis://:Secret-77@h:99999/0", "Port out of range 0-65535"),
        ("redis://:Secret-77@h:x/0", "Port could not be cast to integer value as 'x'"),
        # urlsplit's own message would quote the address, password included.
        ("redis://:Secret\uff03-77@h/0", "a malformed address"),
        ("redis://[::1/0", "a malformed address"),
        ("sentinel://h:1;redis://h2:1/0", "every part must use the same scheme"),
        ("redis://h:1;redis://h2:1/0", "only sentinel:// URLs list several hosts"),
    ],
)
def test_the_client_and_the_workers_refuse_a_url_for_the_same_reason(url, reason):
    with pytest.raises(client_urls.RedisURLError, match=f"^{re.escape(reason)}"):
        client_urls.RedisTarget.from_url(url)
    with pytest.raises(InvalidArgument) as ours:
        client_urls.parse(url, "state_redis")
    with pytest.raises(ConfigurationError) as theirs:
        worker_urls.parse(url, "NOTIFY_STATE_REDIS_URL")
    assert f"not a usable Redis URL: {reason}" in str(ours.value)
    assert f": {reason}" in theirs.value.message and theirs.value.code == "bad_redis_url"
    for text in (str(ours.value), theirs.value.message):
        assert "Secret" not in text


def test_database_numbers_are_read_as_redis_py_and_kombu_read_them():
    # int() of the path, as both do; the client followed a stricter rule of its own before.
    assert client_urls.parse("redis://h/+3").db == worker_urls.parse("redis://h/+3").db == 3
    assert client_urls.parse("sentinel://a/07;sentinel://b/9").db == 7  # the first one given


def test_sentinel_credentials_reach_every_part_from_wherever_they_are_written():
    assert client_urls.celery_url(";sentinel://:P%40w@a/1;sentinel://b") == (
        "sentinel://:P%40w@a:26379/1;sentinel://:P%40w@b:26379/1"
    )
    assert client_urls.celery_url("sentinel://a;sentinel://u:Pw@b/2") == (
        "sentinel://u:Pw@a:26379/2;sentinel://u:Pw@b:26379/2"
    )
    assert client_urls.celery_url("sentinel://a;sentinel://b/2") == (
        "sentinel://a:26379/2;sentinel://b:26379/2"
    )
    target = worker_urls.parse("sentinel://a;sentinel://:Pw@b/2")
    assert worker_urls.celery_url(target) == target.celery_url()


def test_a_target_shows_no_password():
    for target in (client_urls.parse(SENTINEL_URL), worker_urls.parse(SENTINEL_URL)):
        assert "data-Pw-1" not in repr(target) and "10.0.0.2" in repr(target)


def test_settings_come_from_the_workers_variables(tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    settings = client_urls.RedisSettings.from_env(
        {
            "NOTIFY_REDIS_CA_FILE": str(ca),
            "NOTIFY_REDIS_SENTINEL_MASTER": "notify-master",
            "NOTIFY_REDIS_SENTINEL_PASSWORD": "sentinel-Pw-3",
            "NOTIFY_REDIS_SENTINEL_TLS": "1",
        }
    )
    assert settings.sentinel_master == "notify-master" and settings.sentinel_tls
    assert "sentinel-Pw-3" not in repr(settings)
    assert settings.sentinel_kwargs() == {
        **client_urls.SENTINEL_OPTIONS,
        "password": "sentinel-Pw-3",
        "ssl": True,
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": str(ca),
    }
    defaults = client_urls.RedisSettings.from_env({})
    assert (defaults.sentinel_master, defaults.sentinel_tls, defaults.ca_file) == (
        "mymaster",
        False,
        None,
    )
    with pytest.raises(InvalidArgument):
        client_urls.RedisSettings.from_env({"NOTIFY_REDIS_CA_FILE": str(tmp_path / "none")})
    with pytest.raises(InvalidArgument):
        client_urls.RedisSettings.from_env({"NOTIFY_REDIS_SENTINEL_TLS": "maybe"})


def test_a_rediss_url_verifies_the_certificate_against_the_ca_file(tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    client = client_urls.make_client(
        "rediss://:Pw@127.0.0.1:6390/1", client_urls.RedisSettings(ca_file=str(ca))
    )
    kwargs = client.connection_pool.connection_kwargs
    assert client.connection_pool.connection_class is redis.SSLConnection
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_ca_certs"], kwargs["db"]) == (
        ssl.CERT_REQUIRED,
        str(ca),
        1,
    )


def test_a_sentinel_url_gives_a_client_that_asks_the_sentinels_for_the_master():
    settings = client_urls.RedisSettings(
        sentinel_master="notify-master", sentinel_password="sentinel-Pw-3"
    )
    client = client_urls.make_client(SENTINEL_URL, settings)
    pool = client.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
    assert pool.service_name == "notify-master"
    assert pool.connection_kwargs["password"] == "data-Pw-1"
    assert pool.connection_kwargs["db"] == 2
    sentinels = pool.sentinel_manager.sentinels
    assert [(s.connection_pool.connection_kwargs["host"]) for s in sentinels] == [
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
    ]
    assert sentinels[0].connection_pool.connection_kwargs["password"] == "sentinel-Pw-3"

    tls = client_urls.make_client(
        SENTINEL_URL, client_urls.RedisSettings(sentinel_tls=True)
    ).connection_pool
    assert tls.connection_class is redis.sentinel.SentinelManagedSSLConnection
    assert tls.sentinel_manager.sentinels[0].connection_pool.connection_class is (
        redis.SSLConnection
    )


def test_the_client_state_redis_and_broker_take_the_sentinel_form(monkeypatch):
    monkeypatch.setenv("NOTIFY_REDIS_SENTINEL_MASTER", "notify-master")
    monkeypatch.setenv("NOTIFY_REDIS_SENTINEL_PASSWORD", "sentinel-Pw-3")
    client = NotifyClient(broker_url=SENTINEL_URL, state_redis=SENTINEL_URL)
    assert client.state_redis.connection_pool.service_name == "notify-master"
    conf = client.app.conf
    assert conf.broker_transport_options["master_name"] == "notify-master"
    assert conf.broker_transport_options["sentinel_kwargs"]["password"] == "sentinel-Pw-3"
    assert conf.broker_url.count("data-Pw-1") == 3  # on every part, as kombu reads it
    assert not conf.broker_use_ssl

    monkeypatch.setenv("NOTIFY_REDIS_SENTINEL_TLS", "1")
    tls = NotifyClient(broker_url=SENTINEL_URL)
    assert tls.app.conf.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    rediss = NotifyClient(broker_url="rediss://:Pw@h:6379/0")
    assert rediss.app.conf.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}


def test_the_client_result_backend_takes_the_sentinel_form(monkeypatch):
    monkeypatch.setenv("NOTIFY_REDIS_SENTINEL_MASTER", "notify-master")
    monkeypatch.setenv("NOTIFY_REDIS_SENTINEL_TLS", "1")
    client = NotifyClient(broker_url="redis://h:6379/0", result_backend=SENTINEL_URL)
    conf = client.app.conf
    assert conf.result_backend_transport_options["master_name"] == "notify-master"
    assert conf.redis_backend_use_ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert conf.result_backend.count("data-Pw-1") == 3
    assert not conf.broker_use_ssl  # the broker is a plain redis:// URL
