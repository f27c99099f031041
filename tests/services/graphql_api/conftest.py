"""The real API served by uvicorn on a free port, over its own migrated database and the test Redis.

One server per session; each test starts from empty tables (``api``), with one token per role
(``tokens``). Worker tasks go to a Celery queue of the session's own (under ``redis_key_prefix``), so
no worker of another session picks them up; tests read that queue to see what was enqueued.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import uvicorn
from redis.asyncio import Redis

from services.api.app import create_app
from services.api.auth import create_token
from services.api.limits import Limits
from services.api.tasks import CeleryTaskQueue
from services.common.db import create_pool
from services.common.embedded import find_free_port
from services.common.settings import Settings

# Small enough that tests can exceed them cheaply, large enough for every real query of the suite.
TEST_LIMITS = Limits(max_depth=8, max_aliases=10, max_tokens=3000, max_cost=20_000)
TEST_MAX_BODY = 256 * 1024
TOKEN_CACHE_SECONDS = 0.5

# Every table but the migrations' own: flow-store rollups come and go as that store evolves.
ALL_TABLES = """
SELECT string_agg(format('%I', tablename), ', ') FROM pg_tables
WHERE schemaname = 'public' AND tablename <> 'schema_migrations'
"""

ROLE_GRANTS: dict[str, tuple[str, list[str], list[str]]] = {
    "admin": ("admin", [], []),
    "tier-admin": ("tier-admin", ["security"], []),
    "developer": ("developer", ["default"], ["storefront"]),
    "viewer": ("viewer", [], []),
}


@pytest.fixture(scope="session")
async def api_database_url(migrated_database_factory: Any) -> str:
    """A migrated database of the API tests' own (they commit, so they do not share the session's)."""
    url: str = await migrated_database_factory()
    return url


@pytest.fixture(scope="session")
async def api_pool(api_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(api_database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def task_queue_name(redis_key_prefix: str) -> str:
    return f"{redis_key_prefix}tasks"


@dataclass
class ApiServer:
    url: str
    settings: Settings

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/graphql"


@contextlib.contextmanager
def serve_api(database_url: str, redis_url: str, queue: str) -> Iterator[ApiServer]:
    """The API app, served by uvicorn in a thread (its own event loop, pool and Redis client).

    Worker tasks go to the Celery queue ``queue``.
    """
    settings = Settings(database_url=database_url, redis_url=redis_url, max_body_size=TEST_MAX_BODY)
    app = create_app(
        settings,
        limits=TEST_LIMITS,
        task_queue=CeleryTaskQueue(redis_url, queue=queue),
        token_cache_seconds=TOKEN_CACHE_SECONDS,
    )
    port = find_free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="api-server", daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        if not thread.is_alive():
            pytest.fail("the API server did not start")
        threading.Event().wait(0.05)
    try:
        yield ApiServer(f"http://127.0.0.1:{port}", settings)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="session")
def api_server(api_database_url: str, redis_url: str, task_queue_name: str) -> Iterator[ApiServer]:
    """The API the tests talk to; its tasks go to the session's own queue, which no worker reads."""
    with serve_api(api_database_url, redis_url, task_queue_name) as server:
        yield server


class Api:
    """A GraphQL client of the test server, with a token per role."""

    def __init__(self, server: ApiServer, client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
        self.server = server
        self.client = client
        self.pool = pool
        self.tokens: dict[str, str] = {}

    async def post(self, query: str, variables: dict[str, Any] | None = None, *, role: str = "admin") -> dict[str, Any]:
        """The JSON answer of one GraphQL request made with the token of ``role``."""
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role in self.tokens else {}
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(self, query: str, variables: dict[str, Any] | None = None, *, role: str = "admin") -> Any:
        """The ``data`` of a request that must succeed."""
        body = await self.post(query, variables, role=role)
        assert "errors" not in body, body
        return body["data"]

    async def error(
        self, query: str, variables: dict[str, Any] | None = None, *, role: str = "admin"
    ) -> dict[str, Any]:
        """The only error of a request that must fail."""
        body = await self.post(query, variables, role=role)
        assert len(body.get("errors") or []) == 1, body
        error: dict[str, Any] = body["errors"][0]
        return error

    async def apply(self, yaml: str, *, role: str = "admin") -> list[dict[str, Any]]:
        data = await self.data(
            "mutation($y: String!) { applyManifests(yaml: $y) { kind name namespace resourceVersion yaml } }",
            {"y": yaml},
            role=role,
        )
        result: list[dict[str, Any]] = data["applyManifests"]
        return result

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self.pool.fetch(sql, *args)

    @staticmethod
    async def wait_for(predicate: Any, *, seconds: float = 10.0, interval: float = 0.05) -> Any:
        """Poll the async ``predicate`` until it returns something truthy; fail after ``seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            value = await predicate()
            if value:
                return value
            if loop.time() > deadline:
                pytest.fail(f"condition not met within {seconds} s")
            await asyncio.sleep(interval)


async def empty_tables(pool: asyncpg.Pool) -> None:
    """Empty every table of the test database (resources, history, audit, tokens, jobs, flows, rollups)."""
    tables = await pool.fetchval(ALL_TABLES)
    await pool.execute(f"TRUNCATE {tables}")


async def open_session(server: ApiServer, pool: asyncpg.Pool) -> AsyncIterator[Api]:
    """A client of ``server`` over empty tables, with a token for each role of ``ROLE_GRANTS``."""
    await empty_tables(pool)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        session = Api(server, client, pool)
        async with pool.acquire() as connection:
            for role, (role_name, tiers, namespaces) in ROLE_GRANTS.items():
                session.tokens[role] = await create_token(connection, f"{role}-user", role_name, tiers, namespaces)
        yield session


@pytest.fixture
async def api(api_server: ApiServer, api_pool: asyncpg.Pool) -> AsyncIterator[Api]:
    """A client of the session's server over empty tables, with a token per role."""
    async for session in open_session(api_server, api_pool):
        yield session


@pytest.fixture
async def task_queue(redis: Redis, task_queue_name: str) -> AsyncIterator[TaskQueueReader]:
    await redis.delete(task_queue_name)
    yield TaskQueueReader(redis, task_queue_name)
    await redis.delete(task_queue_name)


class TaskQueueReader:
    """Reads the Celery messages the API sent to the session's queue (kombu's Redis list)."""

    def __init__(self, redis: Redis, name: str) -> None:
        self.redis = redis
        self.name = name

    async def messages(self) -> list[tuple[str, list[Any]]]:
        """(task name, args) of each queued message, oldest first."""
        found = []
        for raw in reversed(await self.redis.lrange(self.name, 0, -1)):
            message = orjson.loads(raw)
            body = orjson.loads(base64.b64decode(message["body"]))
            found.append((message["headers"]["task"], list(body[0])))
        return found
