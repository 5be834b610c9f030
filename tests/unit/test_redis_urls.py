"""Redis URL forms, their Celery/RedBeat options and password-free messages (no server)."""

from __future__ import annotations

import ssl

import pytest
import redis

from storage.errors import ConfigurationError
from worker.runtime import redis_urls
from worker.runtime.settings import WorkerSettings, result_backend_for, sanitize_url

SENTINEL = "sentinel://:s3cret-pw@10.0.0.1:26379;sentinel://10.0.0.2:26380;sentinel://h3/4"


def settings(**env: str) -> WorkerSettings:
    return WorkerSettings.from_env(env)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:s3cret-pw@h:6379/0", "redis://:**@h:6379/0"),
        ("rediss://notify:s3cret-pw@h:6380/2", "rediss://notify:**@h:6380/2"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        (SENTINEL, "sentinel://:**@10.0.0.1:26379;sentinel://10.0.0.2:26380;sentinel://h3/4"),
        ("redis://u:p%40ss@h/0", "redis://u:**@h/0"),
        ("redis://:pw@h:notaport/0", "redis://:**@h:notaport/0"),
    ],
)
def test_sanitize_url_hides_every_password(url, masked):
    assert sanitize_url(url) == masked
    assert "s3cret" not in sanitize_url(url)


def test_parse_the_three_forms():
    plain = redis_urls.parse("redis://notify:pw@h:6390/3")
    assert (plain.scheme, plain.hosts, plain.db, plain.username, plain.password) == (
        "redis",
        (("h", 6390),),
        3,
        "notify",
        "pw",
    )
    assert redis_urls.parse("rediss://h").tls and redis_urls.parse("rediss://h").hosts == (
        ("h", 6379),
    )
    sentinel = redis_urls.parse(SENTINEL)
    assert sentinel.sentinel and sentinel.db == 4 and sentinel.password == "s3cret-pw"
    assert sentinel.hosts == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("h3", 26379))
    assert sentinel.where == "sentinels 10.0.0.1:26379, 10.0.0.2:26380, h3:26379"


@pytest.mark.parametrize(
    "url",
    [
        "",
        "http://h:1/0",
        "redis://:pw@/0",
        "redis://h/x",
        "redis://h:1;redis://h:2/0",
        "sentinel://h:1;redis://h:2/0",
        "redis://:s3cret-pw@h:99999/0",
        "redis://:s3cret\uff03pw@h/0",  # urlsplit's own error would quote the password
    ],
)
def test_bad_urls_are_clear_errors_without_the_password(url):
    with pytest.raises(ConfigurationError) as raised:
        redis_urls.parse(url, "NOTIFY_STATE_REDIS_URL")
    assert "NOTIFY_STATE_REDIS_URL" in raised.value.message
    assert "s3cret" not in raised.value.message


def test_celery_gets_credentials_and_db_on_every_sentinel():
    target = redis_urls.parse(SENTINEL)
    assert redis_urls.celery_url(target) == (
        "sentinel://:s3cret-pw@10.0.0.1:26379/4;sentinel://:s3cret-pw@10.0.0.2:26380/4;"
        "sentinel://:s3cret-pw@h3:26379/4"
    )
    options = redis_urls.transport_options(
        target, settings(NOTIFY_REDIS_SENTINEL_MASTER="notify", NOTIFY_REDIS_SENTINEL_PASSWORD="x")
    )
    assert options["master_name"] == "notify"
    assert options["sentinel_kwargs"]["password"] == "x"
    assert redis_urls.transport_options(redis_urls.parse("redis://h/0"), settings()) == {}


def test_results_default_to_the_next_db_for_every_form():
    assert result_backend_for("redis://h:1/0") == "redis://h:1/1"
    assert result_backend_for("rediss://u:p@h:1/15") == "rediss://u:p@h:1/0"
    assert result_backend_for(SENTINEL).endswith(";sentinel://h3/5")
    assert settings(REDIS_URL="redis://h/2").state_redis_url == "redis://h/2"
    assert settings(
        REDIS_URL="redis://h/2", NOTIFY_STATE_REDIS_URL="redis://s/0"
    ).state_redis_url == ("redis://s/0")


def test_tls_is_verified_with_the_ca_file(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    options = redis_urls.ssl_options(settings(NOTIFY_REDIS_CA_FILE=str(ca)))
    assert options == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(ca)}
    with pytest.raises(ConfigurationError, match="NOTIFY_REDIS_CA_FILE"):
        settings(NOTIFY_REDIS_CA_FILE=str(tmp_path / "missing.pem"))


def test_redbeat_follows_the_state_store():
    conf = redis_urls.redbeat_config(redis_urls.parse("rediss://u:p@h:1/0"), settings())
    assert conf["redbeat_redis_url"] == "rediss://u:p@h:1/0"
    assert conf["redbeat_redis_use_ssl"]["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    conf = redis_urls.redbeat_config(
        redis_urls.parse(SENTINEL), settings(NOTIFY_REDIS_SENTINEL_MASTER="notify")
    )
    assert conf["redbeat_redis_url"] == "redis-sentinel://"
    options = conf["redbeat_redis_options"]
    assert options["sentinels"] == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("h3", 26379)]
    assert (options["service_name"], options["db"], options["password"]) == (
        "notify",
        4,
        "s3cret-pw",
    )


def test_messages_name_the_host_never_the_password():
    target = redis_urls.parse("rediss://notify:s3cret-pw@cache.internal:6380/0")
    auth = redis_urls.describe_error(target, redis.AuthenticationError("WRONGPASS s3cret-pw"))
    assert "cache.internal:6380 (REDIS_URL)" in auth and "credentials" in auth
    cert = redis.ConnectionError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    text = redis_urls.describe_error(target, cert)
    assert "NOTIFY_REDIS_CA_FILE" in text and "cache.internal:6380" in text
    down = redis_urls.describe_error(target, redis.ConnectionError("Error 111 s3cret-pw"))
    assert "Cannot connect" in down and "s3cret" not in down


def test_repr_of_settings_has_no_password():
    text = repr(settings(REDIS_URL="redis://:s3cret-pw@h/0", NOTIFY_REDIS_SENTINEL_PASSWORD="x1"))
    assert "s3cret" not in text and "x1" not in text
    text = repr(redis_urls.parse("redis://:s3cret-pw@h/0", "NOTIFY_STATE_REDIS_URL"))
    assert "s3cret" not in text and "NOTIFY_STATE_REDIS_URL" in text


def test_check_fails_fast_on_a_closed_port():
    from worker.local.servers import free_port

    url = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"
    with pytest.raises(ConfigurationError) as raised:
        redis_urls.check(settings(REDIS_URL=url), timeout=1)
    assert "127.0.0.1" in raised.value.message and "s3cret" not in raised.value.message


def test_sentinels_and_data_servers_over_tls_with_the_flag(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    plain = settings(REDIS_URL=SENTINEL)
    tls = settings(REDIS_URL=SENTINEL, NOTIFY_REDIS_SENTINEL_TLS="1", NOTIFY_REDIS_CA_FILE=str(ca))
    target = redis_urls.parse(SENTINEL)
    assert not redis_urls.uses_tls(target, plain) and redis_urls.uses_tls(target, tls)
    verified = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(ca)}
    assert redis_urls.sentinel_kwargs(tls) == {
        **redis_urls.SENTINEL_OPTIONS,
        "ssl": True,
        **verified,
    }
    assert "ssl" not in redis_urls.sentinel_kwargs(plain)
    # RedBeat: a dict makes its sentinel-managed master connection a TLS one.
    assert redis_urls.redbeat_config(target, tls)["redbeat_redis_use_ssl"] == verified
    assert redis_urls.redbeat_config(target, plain)["redbeat_redis_use_ssl"] is False
    # The project's own client: TLS to the sentinels and to the master they name.
    pool = redis_urls.make_client(SENTINEL, tls).connection_pool
    assert pool.connection_class is redis.sentinel.SentinelManagedSSLConnection
    assert pool.connection_kwargs["ssl_ca_certs"] == str(ca)
    assert pool.sentinel_manager.sentinels[0].connection_pool.connection_class is (
        redis.SSLConnection
    )
    # The flag only concerns sentinel URLs, and must be a clear yes or no.
    assert not redis_urls.uses_tls(redis_urls.parse("redis://h:1/0"), tls)
    with pytest.raises(ConfigurationError):
        settings(NOTIFY_REDIS_SENTINEL_TLS="maybe")
