"""HTTP behaviour of the API: authentication, GraphiQL, health, metrics, request limits, error masking."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import generate_latest

from graphql import get_introspection_query
from services.api.auth import create_token, hash_token
from services.api.limits import Limits
from services.api.metrics import ApiMetrics
from services.api.schema import build_schema
from services.common.db import create_pool
from services.common.db import tokens as token_store

ME = {"query": "{ me { name } }"}


async def test_requests_without_a_valid_token_are_refused_with_401(api):
    for headers in (
        {},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer rf_nope"},
    ):
        response = await api.client.post("/graphql", json=ME, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_revoked_token_is_refused(api):
    async with api.pool.acquire() as connection:
        token = await create_token(connection, "short-lived", "viewer")
        assert await token_store.revoke_tokens(connection, "short-lived") == 1
        assert await token_store.find_active_token(connection, hash_token(token)) is None
    response = await api.client.post("/graphql", json=ME, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_queries_by_get_need_a_token_too(api):
    response = await api.client.get("/graphql", params={"query": "{ me { name } }"})
    assert response.status_code == 401
    headers = {"Authorization": f"Bearer {api.tokens['viewer']}"}
    response = await api.client.get("/graphql", params={"query": "{ me { name } }"}, headers=headers)
    assert response.json() == {"data": {"me": {"name": "viewer-user"}}}


async def test_graphiql_is_served_to_a_browser_without_a_token(api):
    response = await api.client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_health_and_readiness_need_no_token(api):
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


async def test_metrics_count_requests_errors_and_jobs(api, task_queue):
    await api.post("{ me { name } }")
    await api.post('mutation { deleteResource(kind: "Tier", name: "missing") }')
    await api.data('mutation { recommendPolicies(namespace: "storefront") { id } }')
    text = (await api.client.get("/metrics")).text
    assert 'ringfence_api_requests_total{method="POST",path="/graphql",status="200"}' in text
    assert 'ringfence_api_graphql_errors_total{code="NOT_FOUND"}' in text
    assert 'ringfence_api_jobs_started_total{kind="recommend"}' in text
    assert "ringfence_api_request_duration_seconds_bucket" in text
    assert "ringfence_api_subscriptions_active" in text
    # The job just requested waits in the queue (no worker here): the queue's state is read at the scrape.
    assert 'ringfence_jobs_unfinished{kind="recommend",state="queued"} 1.0' in text
    assert 'ringfence_jobs_oldest_unfinished_seconds{kind="recommend",state="queued"}' in text
    assert "ringfence_api_database_up 1.0" in text
    await api.pool.execute("UPDATE jobs SET state = 'cancelled', finished_at = now()")
    text = (await api.client.get("/metrics")).text
    assert "ringfence_jobs_unfinished{" not in text  # gone, not left at its last value


async def test_metrics_say_when_the_job_queue_cannot_be_read(api_server):
    metrics = ApiMetrics()
    pool = await create_pool(api_server.settings.database_url, min_size=1, max_size=1)
    await metrics.read_jobs(pool)
    assert "ringfence_api_database_up 1.0" in generate_latest(metrics.registry).decode()
    await pool.close()  # as if the database had gone away
    await metrics.read_jobs(pool)
    assert "ringfence_api_database_up 0.0" in generate_latest(metrics.registry).decode()


async def test_a_body_over_the_limit_is_refused_with_413(api):
    limit = api.server.settings.max_body_size
    big = {"query": "{ me { name } }", "variables": {"pad": "x" * limit}}
    response = await api.client.post("/graphql", json=big, headers={"Authorization": f"Bearer {api.tokens['admin']}"})
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"

    async def chunks():
        yield b'{"query": "{ me { name } }", "variables": {"pad": "'
        for _ in range(limit // 1024 + 1):
            yield b"x" * 1024
        yield b'"}}'

    streamed = await api.client.post(
        "/graphql",
        content=chunks(),
        headers={"Authorization": f"Bearer {api.tokens['admin']}", "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("{ tiers { policies { versions { document } } } }", None),
        ("{ " + " ".join(f"a{i}: me {{ name }}" for i in range(11)) + " }", "aliases"),
        (
            (
                "{ flows(first: 1000) { edges { node { startTime endTime reporter action proto destPort sourceType "
                "sourceNamespace sourceNameAggr destType destNamespace destNameAggr destDomains numFlows bytesIn "
                "bytesOut policies pendingPolicies sourceLabels destLabels } } } }"
            ),
            "costs",
        ),
        ("{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }", "introspection lists"),
        ("query { " + " ".join(f"f{i}: me {{ name }}" for i in range(800)) + " }", "token"),
    ],
)
async def test_query_limits(api, query, fragment):
    body = await api.post(query)
    if fragment is None:
        assert "errors" not in body, body
        return
    messages = " ".join(error["message"] for error in body["errors"])
    assert fragment in messages.lower() or fragment in messages, messages
    assert body.get("data") is None


async def test_depth_over_the_limit_is_refused():
    schema = build_schema(Limits(max_depth=2))
    result = await schema.execute("{ tiers { policies { rules { index } } } }")
    assert result.errors is not None
    assert "exceeds maximum operation depth of 2" in result.errors[0].message
    assert result.data is None


async def test_the_standard_introspection_query_is_allowed(api):
    body = await api.post(get_introspection_query(descriptions=True))
    assert "errors" not in body, body.get("errors")
    names = {t["name"] for t in body["data"]["__schema"]["types"]}
    assert {"Query", "Mutation", "Subscription", "Policy", "FlowConnection"} <= names


async def test_unexpected_errors_are_masked_and_logged(api, monkeypatch, caplog):
    from services.api.schema import queries

    def broken(_: str) -> None:
        raise RuntimeError("secret detail of a bug")

    monkeypatch.setattr(queries, "parse_selector", broken)
    with caplog.at_level(logging.ERROR, logger="services.api"):
        error = await api.error("{ validateSelector(selector: \"a == 'b'\") { ok } }")
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert "secret" not in error["message"]
    logged = [record for record in caplog.records if record.exc_info and "secret detail" in str(record.exc_info[1])]
    assert logged, caplog.records
