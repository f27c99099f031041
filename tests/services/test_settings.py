"""Settings: read from the environment once, with defaults, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.settings import Settings, SettingsError


def test_defaults_with_an_empty_environment():
    settings = Settings.from_env({})
    assert settings == Settings(
        database_url=None,
        redis_url=None,
        broker_url=None,
        port=8080,
        data_dir=Path(".data"),
        admin_token=None,
        url="http://127.0.0.1:8080",
        token=None,
        retention_days=30,
        ingest_batch_size=5000,
        ingest_batch_age_seconds=1.0,
        max_body_size=16 * 1024 * 1024,
    )


def test_every_variable_is_read():
    settings = Settings.from_env(
        {
            "RINGFENCE_DATABASE_URL": "postgresql://rf:pw@db.example:5433/rf",
            "RINGFENCE_REDIS_URL": "redis://cache:6379/1",
            "RINGFENCE_BROKER_URL": "amqp://guest:guest@mq:5672//",
            "RINGFENCE_PORT": "9000",
            "RINGFENCE_DATA_DIR": "/var/lib/ringfence",
            "RINGFENCE_ADMIN_TOKEN": "s3cret-admin",
            "RINGFENCE_URL": "https://ringfence.example",
            "RINGFENCE_TOKEN": "s3cret-client",
            "RINGFENCE_RETENTION_DAYS": "7",
            "RINGFENCE_INGEST_BATCH_SIZE": "250",
            "RINGFENCE_INGEST_BATCH_AGE": "0.5",
            "RINGFENCE_MAX_BODY_SIZE": "512KiB",
        }
    )
    assert settings.database_url == "postgresql://rf:pw@db.example:5433/rf"
    assert settings.redis_url == "redis://cache:6379/1"
    assert settings.broker_url == "amqp://guest:guest@mq:5672//"
    assert settings.port == 9000
    assert settings.data_dir == Path("/var/lib/ringfence")
    assert (settings.admin_token, settings.token) == ("s3cret-admin", "s3cret-client")
    assert settings.url == "https://ringfence.example"
    assert (settings.retention_days, settings.ingest_batch_size) == (7, 250)
    assert settings.ingest_batch_age_seconds == 0.5
    assert settings.max_body_size == 512 * 1024


def test_broker_defaults_to_the_redis_url_and_empty_values_count_as_unset():
    settings = Settings.from_env({"RINGFENCE_REDIS_URL": "redis://cache:6379/0", "RINGFENCE_BROKER_URL": ""})
    assert settings.broker_url == "redis://cache:6379/0"


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ({}, ("postgresql://embedded/db", "redis://embedded/0", "redis://embedded/0")),
        (
            {"RINGFENCE_DATABASE_URL": "postgresql://real/db"},
            ("postgresql://real/db", "redis://embedded/0", "redis://embedded/0"),
        ),
        (
            {"RINGFENCE_REDIS_URL": "redis://real/0"},
            ("postgresql://embedded/db", "redis://real/0", "redis://real/0"),
        ),
        (
            {"RINGFENCE_BROKER_URL": "amqp://mq//"},
            ("postgresql://embedded/db", "redis://embedded/0", "amqp://mq//"),
        ),
    ],
)
def test_with_servers_fills_in_only_what_was_not_configured(configured, expected):
    settings = Settings.from_env(configured).with_servers(
        database_url="postgresql://embedded/db", redis_url="redis://embedded/0"
    )
    assert (settings.database_url, settings.redis_url, settings.broker_url) == expected


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RINGFENCE_PORT", "http", "must be an integer, got 'http'"),
        ("RINGFENCE_PORT", "0", "must be between 1 and 65535, got 0"),
        ("RINGFENCE_PORT", "70000", "must be between 1 and 65535, got 70000"),
        ("RINGFENCE_DATABASE_URL", "mysql://db/rf", "must start with one of postgres://, postgresql://"),
        ("RINGFENCE_DATABASE_URL", "postgresql://db:port/rf", "is not a valid URL"),
        ("RINGFENCE_REDIS_URL", "127.0.0.1:6379", "must start with one of redis://"),
        ("RINGFENCE_BROKER_URL", "kafka://k", "must start with one of amqp://"),
        ("RINGFENCE_URL", "ftp://host", "must start with one of http://, https://"),
        ("RINGFENCE_URL", "http://", "has no host"),
        ("RINGFENCE_RETENTION_DAYS", "0", "must be at least 1, got 0"),
        ("RINGFENCE_RETENTION_DAYS", "1.5", "must be an integer"),
        ("RINGFENCE_INGEST_BATCH_SIZE", "-5", "must be at least 1, got -5"),
        ("RINGFENCE_INGEST_BATCH_AGE", "soon", "must be a number of seconds"),
        ("RINGFENCE_INGEST_BATCH_AGE", "0", "positive, finite"),
        ("RINGFENCE_INGEST_BATCH_AGE", "nan", "positive, finite"),
        ("RINGFENCE_INGEST_BATCH_AGE", "inf", "positive, finite"),
        ("RINGFENCE_MAX_BODY_SIZE", "10 parsecs", "must be a size in bytes"),
        ("RINGFENCE_MAX_BODY_SIZE", "0", "at least 1 byte"),
        ("RINGFENCE_ADMIN_TOKEN", "two words", "must not contain whitespace"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(name, value, message):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value})
    assert caught.value.variable == name
    assert str(caught.value).startswith(name)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("value", "size"),
    [("1048576", 1048576), ("64k", 64 * 1024), ("16MiB", 16 * 1024**2), ("2 GB", 2 * 1024**3), ("5b", 5)],
)
def test_body_size_accepts_units(value, size):
    assert Settings.from_env({"RINGFENCE_MAX_BODY_SIZE": value}).max_body_size == size


def test_secrets_never_appear_in_repr_or_errors():
    settings = Settings.from_env({"RINGFENCE_ADMIN_TOKEN": "hunter2-admin", "RINGFENCE_TOKEN": "hunter2-client"})
    assert "hunter2" not in repr(settings)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"RINGFENCE_DATABASE_URL": "mysql://rf:hunter2@db/rf"})
    assert "hunter2" not in str(caught.value)
    assert "mysql://rf:***@db/rf" in str(caught.value)


def test_settings_are_frozen():
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]
