"""POST /ingest/flows and the ingest HTTP client, against a real database."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import flowdb
import httpx
import pytest
from flowdb import SAMPLE_TIME, json_lines, raw_batch, sample_lines
from starlette.applications import Starlette
from starlette.requests import Request

from services.collector.client import ClientSettings, IngestClient, IngestClientError
from services.collector.http import IngestEndpoint, create_app, ingest_route, token_authorizer
from services.collector.lines import RawBatch
from services.collector.pipeline import ParseMode, Parser, Pipeline
from services.collector.store import Backoff, FlowWriter
from services.common.db import create_pool
from services.common.db.tokens import insert_token
from services.common.embedded import find_free_port

# The shared fixtures (tests/services/flowdb.py), made visible to pytest in this module.
flow_template = flowdb.flow_template
flow_db_url = flowdb.flow_db_url
flow_pool = flowdb.flow_pool


LIMIT = 64 * 1024


def make_endpoint(pool: asyncpg.Pool, **options: Any) -> IngestEndpoint:
    writer = FlowWriter(pool, clock=lambda: SAMPLE_TIME, backoff=Backoff(0.01, 0.05))
    pipeline = Pipeline(writer, Parser(ParseMode.INLINE), clock=lambda: SAMPLE_TIME, retention_days=30)
    return IngestEndpoint(pipeline, max_body_size=options.pop("max_body_size", LIMIT), **options)


@pytest.fixture
async def client(flow_pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=[ingest_route(make_endpoint(flow_pool))])  # mounted the way the API mounts it
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://collector") as http:
        yield http


async def counts(pool: asyncpg.Pool) -> tuple[int, int]:
    return await pool.fetchval("SELECT count(*) FROM flows"), await pool.fetchval("SELECT count(*) FROM flow_rejects")


def ndjson(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


MIXED = [*sample_lines("calico-flows.log")[:3], b"garbage", b'{"start_time": 1}', *sample_lines("hubble.jsonl")[:2]]


@pytest.mark.parametrize("compress", [False, True])
async def test_accepted_and_rejected_lines_are_counted_and_stored(
    client: httpx.AsyncClient, flow_pool: asyncpg.Pool, compress: bool
) -> None:
    body = ndjson(MIXED)
    headers = {"Content-Encoding": "gzip"} if compress else {}
    response = await client.post("/ingest/flows", content=gzip.compress(body) if compress else body, headers=headers)
    assert response.status_code == 200
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (5, 2)
    assert [error["line"] for error in answer["errors"]] == [4, 5]
    assert answer["errors"][0]["error"].startswith("not JSON")
    assert await counts(flow_pool) == (5, 2)


async def test_a_body_over_the_limit_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, flow_pool: asyncpg.Pool
) -> None:
    lines = sample_lines("calico-flows.log")
    body = ndjson(lines * (LIMIT // len(ndjson(lines)) + 1))
    assert len(body) > LIMIT
    response = await client.post("/ingest/flows", content=body)
    assert response.status_code == 413
    bomb = gzip.compress(b"\n" * (LIMIT + 1))  # small on the wire, over the limit once inflated
    response = await client.post("/ingest/flows", content=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert await counts(flow_pool) == (0, 0)


async def test_a_retry_with_the_same_idempotency_key_is_stored_once(
    client: httpx.AsyncClient, flow_pool: asyncpg.Pool
) -> None:
    body = ndjson(MIXED)
    first = await client.post("/ingest/flows", content=body, headers={"Idempotency-Key": "k-1"})
    second = await client.post("/ingest/flows", content=body, headers={"Idempotency-Key": "k-1"})
    assert second.json() == first.json()
    assert second.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    assert await counts(flow_pool) == (5, 2)
    third = await client.post("/ingest/flows", content=body, headers={"Idempotency-Key": "k-2"})
    assert third.json()["accepted"] == 5
    assert await counts(flow_pool) == (10, 4)


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Content-Encoding": "br"}, b"{}", 415),
        ({"Content-Encoding": "gzip"}, b"not gzip at all", 400),
        ({"Idempotency-Key": "x" * 300}, b"{}", 400),
    ],
)
async def test_malformed_requests_are_refused(
    client: httpx.AsyncClient, flow_pool: asyncpg.Pool, headers: dict[str, str], body: bytes, status: int
) -> None:
    response = await client.post("/ingest/flows", content=body, headers=headers)
    assert response.status_code == status
    assert await counts(flow_pool) == (0, 0)


async def test_a_database_that_is_down_gets_503_with_retry_after() -> None:
    pool = await create_pool(f"postgresql://postgres@127.0.0.1:{find_free_port()}/none", min_size=0)
    try:
        app = create_app(make_endpoint(pool, write_timeout=0.3))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as http:
            response = await http.post("/ingest/flows", content=ndjson(MIXED))
            assert response.status_code == 503
            assert response.headers["retry-after"].isdigit()
            ready = await http.get("/readyz")
            assert ready.status_code == 503
    finally:
        await pool.close()


async def test_an_unauthorized_request_is_refused(flow_pool: asyncpg.Pool) -> None:
    async def authorize(request: Request) -> bool:
        return request.headers.get("authorization") == "Bearer right"

    app = create_app(make_endpoint(flow_pool, authorize=authorize))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as http:
        wrong = await http.post("/ingest/flows", content=ndjson(MIXED), headers={"Authorization": "Bearer wrong"})
        right = await http.post("/ingest/flows", content=ndjson(MIXED), headers={"Authorization": "Bearer right"})
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert await counts(flow_pool) == (5, 2)


class FlakyTransport(httpx.AsyncBaseTransport):
    """Answers 503 to the first attempt of every batch, then lets it through."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.seen: set[str] = set()
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        key = request.headers["idempotency-key"]
        if key not in self.seen:
            self.seen.add(key)
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"error": "busy"})
        return await self.inner.handle_async_request(request)


async def batches(lines: list[bytes], size: int) -> AsyncIterator[RawBatch]:
    for start in range(0, len(lines), size):
        batch = raw_batch(lines[start : start + size], source="ingest:test")
        batch.first_line_no = start + 1
        yield batch


async def test_the_client_retries_and_every_batch_is_stored_once(flow_pool: asyncpg.Pool) -> None:
    transport = FlakyTransport(httpx.ASGITransport(app=create_app(make_endpoint(flow_pool))))
    client = IngestClient(ClientSettings("http://collector", token="t"), transport=transport)
    lines = [*sample_lines("calico-flows.log"), b"bad line", *sample_lines("goldmane.jsonl")]
    try:
        totals = await client.run(batches(lines, 5))
    finally:
        await client.aclose()
    assert (totals.accepted, totals.rejected) == (len(lines) - 1, 1)
    assert totals.errors == [{"line": 22, "error": totals.errors[0]["error"]}]  # line number in the whole input
    assert transport.requests == 2 * totals.batches
    assert await counts(flow_pool) == (len(lines) - 1, 1)


async def test_the_client_gives_up_on_a_refusal() -> None:
    async def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "unauthorized"})

    client = IngestClient(ClientSettings("http://c", token=None), transport=httpx.MockTransport(refuse))
    try:
        with pytest.raises(IngestClientError, match="401"):
            await client.run(batches(json_lines([{}]), 1))
    finally:
        await client.aclose()


async def test_the_standalone_collector_takes_stored_tokens_but_not_viewers(flow_pool: asyncpg.Pool) -> None:
    for name, role, secret in (("writer", "developer", "dev-secret"), ("reader", "viewer", "view-secret")):
        await insert_token(
            flow_pool,
            name=name,
            role=role,
            tiers=[],
            namespaces=[],
            token_hash=hashlib.sha256(secret.encode()).hexdigest(),
        )
    app = create_app(make_endpoint(flow_pool, authorize=token_authorizer(flow_pool)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as http:
        statuses = [
            (await http.post("/ingest/flows", content=ndjson(MIXED), headers=headers)).status_code
            for headers in (
                {},
                {"Authorization": "Bearer nope"},
                {"Authorization": "Bearer view-secret"},
                {"Authorization": "Bearer dev-secret"},
            )
        ]
    assert statuses == [401, 401, 401, 200]
    assert await counts(flow_pool) == (5, 2)
