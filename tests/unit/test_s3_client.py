"""One client per process, configured as docs/storage.md says."""

from __future__ import annotations

import os

from storage import client as client_module
from storage.client import client_config
from storage.settings import StorageSettings


def test_config_without_endpoint():
    settings = StorageSettings.from_env({"AWS_REGION": "eu-west-2", "NOTIFY_S3_MAX_POOL": "32"})
    config = client_config(settings)
    assert config.region_name == "eu-west-2"
    assert config.retries == {"mode": "standard", "total_max_attempts": 5}
    assert config.max_pool_connections == 32
    assert config.connect_timeout == 5 and config.read_timeout == 30
    # Real S3: botocore's default checksum behaviour stays.
    assert config.request_checksum_calculation in (None, "when_supported")


def test_config_with_endpoint_uses_when_required_checksums():
    settings = StorageSettings.from_env({"S3_ENDPOINT_URL": "http://127.0.0.1:9000"})
    config = client_config(settings)
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert config.s3 == {"addressing_style": "path"}


def test_client_is_shared_within_a_process_and_remade_after_fork(monkeypatch):
    client_module.reset_client()
    first = client_module.get_client()
    assert client_module.get_client() is first
    monkeypatch.setattr(os, "getpid", lambda: -1)  # what a forked child would see
    assert client_module.get_client() is not first
    client_module.reset_client()
