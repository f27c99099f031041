"""Configuration of every Ringfence service, read once from the environment at the entry point.

The names are fixed by the design (``RINGFENCE_DATABASE_URL`` and friends). An empty variable counts as
unset, as it does in most deployment tools. A bad value raises :class:`SettingsError` naming the variable,
the value and what was expected; secrets are never echoed back.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import urlsplit

_T = TypeVar("_T")

DEFAULT_PORT: Final = 8080
DEFAULT_DATA_DIR: Final = Path(".data")
DEFAULT_URL: Final = "http://127.0.0.1:8080"
DEFAULT_RETENTION_DAYS: Final = 30
DEFAULT_INGEST_BATCH_SIZE: Final = 5_000
DEFAULT_INGEST_BATCH_AGE_SECONDS: Final = 1.0
DEFAULT_MAX_BODY_SIZE: Final = 16 * 1024 * 1024

_DATABASE_SCHEMES: Final = frozenset({"postgresql", "postgres"})
_REDIS_SCHEMES: Final = frozenset({"redis", "rediss", "unix"})
_BROKER_SCHEMES: Final = frozenset({"redis", "rediss", "unix", "amqp", "amqps", "sentinel"})
_HTTP_SCHEMES: Final = frozenset({"http", "https"})

_SIZE_UNITS: Final = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
}
_SIZE_PATTERN: Final = re.compile(r"\s*(\d+)\s*([a-zA-Z]*)\s*")


class SettingsError(ValueError):
    """A configuration variable holds a value Ringfence cannot use."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable} {message}")
        self.variable = variable


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable, with the defaults a developer's machine needs.

    ``database_url`` and ``redis_url`` are ``None`` when not configured: ``ringfence up`` then starts
    embedded servers and fills them in with :meth:`with_servers`. ``broker_url`` defaults to the Redis URL.
    """

    database_url: str | None = None
    redis_url: str | None = None
    broker_url: str | None = None
    port: int = DEFAULT_PORT
    data_dir: Path = DEFAULT_DATA_DIR
    admin_token: str | None = dataclasses.field(default=None, repr=False)
    url: str = DEFAULT_URL
    token: str | None = dataclasses.field(default=None, repr=False)
    retention_days: int = DEFAULT_RETENTION_DAYS
    ingest_batch_size: int = DEFAULT_INGEST_BATCH_SIZE
    ingest_batch_age_seconds: float = DEFAULT_INGEST_BATCH_AGE_SECONDS
    max_body_size: int = DEFAULT_MAX_BODY_SIZE

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build the settings from ``environ`` (normally ``os.environ``), validating every value."""
        reader = _Reader(environ)
        redis_url = reader.url("RINGFENCE_REDIS_URL", _REDIS_SCHEMES)
        return cls(
            database_url=reader.url("RINGFENCE_DATABASE_URL", _DATABASE_SCHEMES),
            redis_url=redis_url,
            broker_url=reader.url("RINGFENCE_BROKER_URL", _BROKER_SCHEMES) or redis_url,
            port=reader.integer("RINGFENCE_PORT", DEFAULT_PORT, minimum=1, maximum=65535),
            data_dir=Path(reader.text("RINGFENCE_DATA_DIR") or DEFAULT_DATA_DIR),
            admin_token=reader.secret("RINGFENCE_ADMIN_TOKEN"),
            url=reader.url("RINGFENCE_URL", _HTTP_SCHEMES) or DEFAULT_URL,
            token=reader.secret("RINGFENCE_TOKEN"),
            retention_days=reader.integer("RINGFENCE_RETENTION_DAYS", DEFAULT_RETENTION_DAYS, minimum=1),
            ingest_batch_size=reader.integer("RINGFENCE_INGEST_BATCH_SIZE", DEFAULT_INGEST_BATCH_SIZE, minimum=1),
            ingest_batch_age_seconds=reader.seconds("RINGFENCE_INGEST_BATCH_AGE", DEFAULT_INGEST_BATCH_AGE_SECONDS),
            max_body_size=reader.size("RINGFENCE_MAX_BODY_SIZE", DEFAULT_MAX_BODY_SIZE),
        )

    def with_servers(self, *, database_url: str | None = None, redis_url: str | None = None) -> Settings:
        """Fill in the URLs of servers started at run time (embedded ones); configured URLs win.

        The broker follows the Redis URL unless a broker was configured on its own.
        """
        new_database = self.database_url or database_url
        new_redis = self.redis_url or redis_url
        return dataclasses.replace(
            self,
            database_url=new_database,
            redis_url=new_redis,
            broker_url=self.broker_url or new_redis,
        )


class _Reader:
    """Reads and validates one variable at a time; empty values count as unset."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def text(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def secret(self, name: str) -> str | None:
        value = self.text(name)
        if value is not None and any(ch.isspace() for ch in value):
            raise SettingsError(name, "must not contain whitespace")
        return value

    def url(self, name: str, schemes: frozenset[str]) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        expected = ", ".join(f"{scheme}://" for scheme in sorted(schemes))
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - reading it validates the port number
        except ValueError as error:
            raise SettingsError(name, f"is not a valid URL ({error}); expected one of {expected}") from None
        if parts.scheme not in schemes:
            raise SettingsError(name, f"must start with one of {expected}, got {_redact(value)!r}")
        if parts.scheme in _HTTP_SCHEMES and not parts.hostname:
            raise SettingsError(name, f"has no host: {_redact(value)!r}")
        return value

    def integer(self, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        number = self._parse(name, default, int, "an integer")
        if number < minimum or (maximum is not None and number > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise SettingsError(name, f"must be {bounds}, got {number}")
        return number

    def seconds(self, name: str, default: float) -> float:
        number = self._parse(name, default, float, "a number of seconds")
        if not number > 0 or number == float("inf"):
            raise SettingsError(name, f"must be a positive, finite number of seconds, got {number}")
        return number

    def size(self, name: str, default: int) -> int:
        value = self.text(name)
        if value is None:
            return default
        match = _SIZE_PATTERN.fullmatch(value)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _SIZE_UNITS:
            raise SettingsError(name, f"must be a size in bytes such as 1048576, 512KiB or 16MiB, got {value!r}")
        number = int(match.group(1)) * _SIZE_UNITS[unit]
        if number < 1:
            raise SettingsError(name, f"must be at least 1 byte, got {value!r}")
        return number

    def _parse(self, name: str, default: _T, parse: Callable[[str], _T], expected: str) -> _T:
        value = self.text(name)
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError:
            raise SettingsError(name, f"must be {expected}, got {value!r}") from None


def _redact(url: str) -> str:
    """Hide a password in a URL so that error messages never leak it."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
