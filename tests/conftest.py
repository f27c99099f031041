"""Fixtures for tests against real PostgreSQL and Redis servers.

Servers: ``RINGFENCE_DATABASE_URL`` / ``RINGFENCE_REDIS_URL`` when set (any database on the server will do:
it is only used to create and drop the test databases), otherwise embedded servers started once per
session in a temporary folder. Everything is lazy: a test that asks for none of these fixtures starts
nothing, so the pure core's tests need no server.

Isolation, as several test sessions may share one server:
- the session works in its own database, ``ringfence_test_<pid>_<random>``, migrated once and dropped at
  the end; ``db`` runs each test in a transaction rolled back afterwards (code under test should take a
  connection, not the pool, to see that transaction);
- on Redis, the session's keys start with ``redis_key_prefix``; the ``redis`` fixture deletes them after
  each test.

Tests using any of these fixtures are marked ``integration`` automatically (``-m "not integration"``
runs the rest).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from hypothesis import settings
from redis.asyncio import Redis
from support.database import rolled_back

from services.common.db import create_pool, migrate
from services.common.embedded import FAST_UNSAFE_POSTGRES_OPTIONS, EmbeddedPostgres, EmbeddedRedis
from services.common.settings import Settings

# Property tests check answers, not speed: a per-example deadline on a shared 2-core machine measures the
# machine (a loaded run failed plan_slices' property on the default 200 ms deadline, not on an answer).
settings.register_profile("ringfence", deadline=None)
settings.load_profile("ringfence")

INTEGRATION_FIXTURES = frozenset(
    {
        "postgres_server_url",
        "database_factory",
        "migrated_database_factory",
        "database_url",
        "db_pool",
        "db",
        "redis_url",
        "redis",
    }
)

CreateDatabase = Callable[[], Awaitable[str]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def environment_settings() -> Settings:
    """The settings of the environment the tests run in (server URLs may be None)."""
    return Settings.from_env(os.environ)


@pytest.fixture(scope="session")
def embedded_data_dir() -> Iterator[Path]:
    """A temporary folder for the session's embedded servers, removed at the end."""
    with tempfile.TemporaryDirectory(prefix="ringfence-test-") as folder:
        yield Path(folder)


@pytest.fixture(scope="session")
def postgres_server_url(environment_settings: Settings, embedded_data_dir: Path) -> Iterator[str]:
    """A URL on the PostgreSQL server the tests use, for creating and dropping databases."""
    if environment_settings.database_url is not None:
        yield environment_settings.database_url
        return
    with EmbeddedPostgres(embedded_data_dir, database="postgres", server_options=FAST_UNSAFE_POSTGRES_OPTIONS) as pg:
        yield pg.url


@pytest.fixture(scope="session")
async def database_factory(postgres_server_url: str) -> AsyncIterator[CreateDatabase]:
    """Create empty databases with unique names on the test server; all are dropped at the end."""
    created: list[str] = []

    async def create() -> str:
        name = f"ringfence_test_{os.getpid()}_{secrets.token_hex(4)}"
        await _admin(postgres_server_url, f'CREATE DATABASE "{name}"')
        created.append(name)
        return database_url_for(postgres_server_url, name)

    yield create
    for name in created:
        await _admin(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def migrated_database_factory(database_factory: CreateDatabase) -> CreateDatabase:
    """Like ``database_factory``, with every migration applied to each new database."""

    async def create() -> str:
        url = await database_factory()
        connection = await asyncpg.connect(url)
        try:
            await migrate(connection)
        finally:
            await connection.close()
        return url

    return create


@pytest.fixture(scope="session")
async def database_url(migrated_database_factory: CreateDatabase) -> str:
    """The session's own database, with every migration applied."""
    return await migrated_database_factory()


@pytest.fixture(scope="session")
async def db_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the session's migrated database (changes made through it are NOT rolled back)."""
    pool = await create_pool(database_url, min_size=1, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture
async def db(db_pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside a transaction that is rolled back after the test."""
    async with rolled_back(db_pool) as connection:
        yield connection


@pytest.fixture(scope="session")
def redis_url(environment_settings: Settings, embedded_data_dir: Path) -> Iterator[str]:
    """The Redis server the tests use (shared: keep keys under ``redis_key_prefix``)."""
    if environment_settings.redis_url is not None:
        yield environment_settings.redis_url
        return
    with EmbeddedRedis(embedded_data_dir, persistent=False) as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_key_prefix() -> str:
    """A key prefix unique to this test session."""
    return f"ringfence-test:{os.getpid()}-{secrets.token_hex(4)}:"


@pytest.fixture
async def redis(redis_url: str, redis_key_prefix: str) -> AsyncIterator[Redis]:
    """A Redis client; keys under ``redis_key_prefix`` are deleted after the test."""
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=f"{redis_key_prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def database_url_for(server_url: str, database: str) -> str:
    """``server_url`` pointing at another database of the same server."""
    return urlsplit(server_url)._replace(path=f"/{database}").geturl()


async def _admin(server_url: str, statement: str) -> None:
    # CREATE DATABASE fails while another session is copying template1; such clashes are brief.
    for attempt in range(10):
        connection = await asyncpg.connect(server_url)
        try:
            await connection.execute(statement)
        except asyncpg.ObjectInUseError:
            if attempt == 9:
                raise
        else:
            return
        finally:
            await connection.close()
        await asyncio.sleep(0.2 * (attempt + 1))
