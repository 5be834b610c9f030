"""The bucket registry and its configuration rules (the table in docs/storage.md)."""

from __future__ import annotations

import pytest

from storage.buckets import PURPOSES, REGISTRY, CleanupRule, resolve_bucket_names, spec
from storage.errors import ConfigurationError, InvalidInput
from storage.settings import StorageSettings

DOCUMENTED_BUCKETS = {
    "csv-upload": (
        "S3_BUCKET_CSV_UPLOAD",
        "local-notifications-csv-upload",
        "development-notifications-csv-upload",
    ),
    "contact-list": (
        "S3_BUCKET_CONTACT_LIST_UPLOAD",
        "local-contact-list",
        "development-contact-list",
    ),
    "logo": ("S3_BUCKET_LOGO_UPLOAD", "public-logos-local", "public-logos-tools"),
    "mou": ("S3_BUCKET_MOU", "local-mou", "notify.tools-mou"),
    "transient-letters": (
        "S3_BUCKET_TRANSIENT_UPLOADED_LETTERS",
        "local-transient-uploaded-letters",
        "development-transient-uploaded-letters",
    ),
    "letter-backups": (
        "S3_BUCKET_PRECOMPILED_ORIGINALS_BACKUP_LETTERS",
        "local-precompiled-originals-backup-letters",
        "development-letters-precompiled-originals-backup",
    ),
    "letter-attachments": (
        "S3_BUCKET_LETTER_ATTACHMENTS",
        "local-letter-attachments",
        "development-letter-attachments",
    ),
    "report-downloads": (
        "S3_BUCKET_REPORT_REQUESTS_DOWNLOAD",
        "local-report-requests-download",
        "development-report-requests-download",
    ),
    "email-attachments": (
        "S3_BUCKET_TEMPLATE_EMAIL_FILES",
        "local-template-email-files",
        "development-template-email-files",
    ),
    "letters-pdf": ("S3_BUCKET_LETTERS_PDF", "local-letters-pdf", "development-letters-pdf"),
}


def test_registry_matches_the_spec_table():
    assert set(PURPOSES) == set(DOCUMENTED_BUCKETS)
    for purpose, (env_var, local, development) in DOCUMENTED_BUCKETS.items():
        bucket = REGISTRY[purpose]
        assert (bucket.env_var, bucket.local_default, bucket.development_default) == (
            env_var,
            local,
            development,
        )


@pytest.mark.parametrize("environment,index", [("local", 1), ("development", 2)])
def test_defaults_per_environment(environment, index):
    names = resolve_bucket_names({}, environment)
    assert names == {p: row[index] for p, row in DOCUMENTED_BUCKETS.items()}


def test_test_environment_uses_test_purpose_names():
    names = resolve_bucket_names({}, "test")
    assert names["csv-upload"] == "test-csv-upload"
    assert names["letters-pdf"] == "test-letters-pdf"


def test_env_var_wins_over_default():
    names = resolve_bucket_names({"S3_BUCKET_MOU": "my-mou"}, "local")
    assert names["mou"] == "my-mou"


def test_production_without_variables_names_every_missing_one():
    with pytest.raises(ConfigurationError) as caught:
        StorageSettings.from_env({"NOTIFY_ENVIRONMENT": "production"})
    for env_var, *_ in DOCUMENTED_BUCKETS.values():
        assert env_var in caught.value.message


def test_production_missing_one_variable_names_only_that_one():
    environ = {row[0]: f"prod-{p}" for p, row in DOCUMENTED_BUCKETS.items()}
    environ["NOTIFY_ENVIRONMENT"] = "production"
    del environ["S3_BUCKET_LETTERS_PDF"]
    with pytest.raises(ConfigurationError) as caught:
        StorageSettings.from_env(environ)
    assert "S3_BUCKET_LETTERS_PDF" in caught.value.message
    assert "S3_BUCKET_MOU" not in caught.value.message


def test_production_with_every_variable_set():
    environ = {row[0]: f"prod-{p}" for p, row in DOCUMENTED_BUCKETS.items()}
    environ.update(NOTIFY_ENVIRONMENT="production", AWS_REGION="eu-west-2")
    settings = StorageSettings.from_env(environ)
    assert settings.bucket("csv-upload") == "prod-csv-upload"
    assert settings.region == "eu-west-2"


def test_region_defaults_to_eu_west_1_and_endpoint_is_optional():
    settings = StorageSettings.from_env({})
    assert settings.region == "eu-west-1"
    assert settings.endpoint_url is None


def test_bad_integer_setting_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="NOTIFY_S3_MAX_POOL"):
        StorageSettings.from_env({"NOTIFY_S3_MAX_POOL": "lots"})


def test_unknown_purpose_is_refused_with_the_known_ones():
    with pytest.raises(InvalidInput) as caught:
        spec("bogus")
    assert "csv-upload" in caught.value.message


def test_protected_purposes():
    protected = {p for p, b in REGISTRY.items() if b.protected}
    assert protected == {"mou", "letter-backups", "letters-pdf"}
    assert REGISTRY["logo"].cleanup is CleanupRule.TEMP_LOGO
    assert REGISTRY["csv-upload"].retention_env == "NOTIFY_CSV_RETENTION_DAYS"
