"""Subscriptions over a real WebSocket, message by message: jobProgress and impactPreview.

The worker's side is played by the test: it publishes the job's events on Redis exactly as the
workers do (``services.common.pubsub.JobEvents``), so each message the client receives can be checked
against the event that caused it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from api_manifests import BACKEND, NETWORK_SET, SECURITY_POLICY, TIERS
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect

from services.common import pubsub
from services.common.pubsub import JobEvents

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
RECEIVE_TIMEOUT = 10.0

PREVIEW = """subscription($y: String!, $d: [ResourceRef!]) {
  impactPreview(yaml: $y, deletes: $d) {
    __typename
    ... on ImpactProgress { processed total }
    ... on ImpactedFlow {
      before after beforeTrace afterTrace change flow { sourceNameAggr destNameAggr destPort action } }
    ... on ImpactSummary { examined changed newlyDenied newlyAllowed uncertain }
  } }"""
JOB_PROGRESS = "subscription($id: ID!) { jobProgress(id: $id) { id kind state progress error result } }"


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT))
    while message.get("type") in ("ping", "ka"):
        if message["type"] == "ping":
            await ws.send(orjson.dumps({"type": "pong"}).decode())
        message = orjson.loads(await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT))
    return message


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(message).decode())


@contextlib.asynccontextmanager
async def session(api, role: str = "admin", protocol: str = TRANSPORT_WS) -> AsyncIterator[ClientConnection]:
    """A WebSocket with the connection initialised and acknowledged."""
    async with connect(api.server.ws_url, subprotocols=[protocol]) as ws:
        await send(ws, {"type": "connection_init", "payload": {"Authorization": f"Bearer {api.tokens[role]}"}})
        assert await receive(ws) == {"type": "connection_ack"}
        yield ws


@pytest.fixture
async def events(redis: Redis) -> AsyncIterator[JobEvents]:
    publisher = JobEvents(redis)
    yield publisher
    keys = [key async for key in redis.scan_iter(match=f"{pubsub.CHANNEL_PREFIX}*")]
    if keys:
        await redis.delete(*keys)


async def queued_job(api, kind: str) -> dict[str, Any]:
    async def find() -> Any:
        rows = await api.fetch("SELECT id::text AS id, params, state FROM jobs WHERE kind = $1", kind)
        return dict(rows[0]) if rows else None

    job: dict[str, Any] = await api.wait_for(find)
    return job


async def job_state(api, job_id: str) -> str:
    rows = await api.fetch("SELECT state FROM jobs WHERE id = $1::uuid", job_id)
    return str(rows[0]["state"])


IMPACTED = {
    "type": "ImpactedFlow",
    "key": "k1",
    "change": "newly_denied",
    "flow": {
        "startTime": "2024-06-13T00:00:00+00:00",
        "endTime": "2024-06-13T00:05:00+00:00",
        "reporter": "src",
        "action": "allow",
        "proto": "tcp",
        "destPort": 8080,
        "sourceType": "wep",
        "sourceNamespace": "storefront",
        "sourceNameAggr": "backend-6cfbdd589f-*",
        "destType": "wep",
        "destNamespace": "storefront",
        "destNameAggr": "logging-7b9c8d6f5e-*",
        "destDomains": [],
        "numFlows": 3,
        "bytesIn": 10,
        "bytesOut": 20,
        "policies": ["0|default|storefront/default.backend|allow|0"],
        "pendingPolicies": [],
    },
    "before": "allow",
    "after": "deny",
    "beforeTrace": ["0|default|storefront/default.backend|allow|0"],
    "afterTrace": ["0|default|storefront/default.backend|deny|-1"],
    "uncertain": False,
}
SUMMARY = {"type": "ImpactSummary", "examined": 12, "changed": 1, "newlyDenied": 1, "newlyAllowed": 0, "uncertain": 0}


async def test_impact_preview_streams_progress_changed_flows_and_one_summary(api, events, task_queue):
    await api.apply(BACKEND)
    change = BACKEND.replace("order: 100", "order: 101")
    async with session(api, role="developer") as ws:
        variables = {"y": change, "d": [{"kind": "NetworkSet", "name": "partners", "namespace": "storefront"}]}
        await api.apply(NETWORK_SET)
        await send(ws, {"id": "1", "type": "subscribe", "payload": {"query": PREVIEW, "variables": variables}})
        job = await queued_job(api, "preview")
        assert job["params"]["yaml"] == change
        assert job["params"]["deletes"] == [{"kind": "NetworkSet", "namespace": "storefront", "name": "partners"}]
        assert ("ringfence.preview", [job["id"]]) in await task_queue.messages()

        await events.publish(job["id"], {"type": "ImpactProgress", "processed": 0, "total": 12})
        message = await receive(ws)
        assert message == {
            "id": "1",
            "type": "next",
            "payload": {"data": {"impactPreview": {"__typename": "ImpactProgress", "processed": 0, "total": 12}}},
        }
        await events.publish(job["id"], IMPACTED)
        impacted = (await receive(ws))["payload"]["data"]["impactPreview"]
        assert impacted == {
            "__typename": "ImpactedFlow",
            "before": "allow",
            "after": "deny",
            "beforeTrace": IMPACTED["beforeTrace"],
            "afterTrace": IMPACTED["afterTrace"],
            "change": "newly_denied",
            "flow": {
                "sourceNameAggr": "backend-6cfbdd589f-*",
                "destNameAggr": "logging-7b9c8d6f5e-*",
                "destPort": 8080,
                "action": "allow",
            },
        }
        await events.publish(job["id"], {"type": "ImpactProgress", "processed": 12, "total": 12})
        assert (await receive(ws))["payload"]["data"]["impactPreview"]["processed"] == 12
        await events.publish(job["id"], SUMMARY, final=True)
        summary = (await receive(ws))["payload"]["data"]["impactPreview"]
        assert summary == {"__typename": "ImpactSummary", **{k: v for k, v in SUMMARY.items() if k != "type"}}
        assert await receive(ws) == {"id": "1", "type": "complete"}
    await asyncio.sleep(0.2)
    assert await job_state(api, job["id"]) == "queued"  # finished streams cancel nothing


async def test_a_late_subscriber_misses_nothing_of_what_was_published(api, events, task_queue):
    await api.apply(BACKEND)
    async with session(api) as ws:
        await send(ws, {"id": "p", "type": "subscribe", "payload": {"query": PREVIEW, "variables": {"y": BACKEND}}})
        job = await queued_job(api, "preview")
        for processed in (0, 5, 3):  # a retried attempt repeats earlier progress: dropped
            await events.publish(job["id"], {"type": "ImpactProgress", "processed": processed, "total": 5})
        await events.publish(job["id"], SUMMARY, final=True)
        kinds = [(await receive(ws))["payload"]["data"]["impactPreview"] for _ in range(3)]
        assert [k.get("processed") for k in kinds[:2]] == [0, 5]
        assert kinds[2]["__typename"] == "ImpactSummary"


@pytest.mark.parametrize("leave", ["complete", "close"])
async def test_leaving_a_preview_early_cancels_its_job(api, events, task_queue, leave):
    await api.apply(BACKEND)
    async with session(api) as ws:
        await send(ws, {"id": "1", "type": "subscribe", "payload": {"query": PREVIEW, "variables": {"y": BACKEND}}})
        job = await queued_job(api, "preview")
        await events.publish(job["id"], {"type": "ImpactProgress", "processed": 0, "total": 100})
        assert (await receive(ws))["type"] == "next"
        if leave == "complete":
            await send(ws, {"id": "1", "type": "complete"})

    async def cancelled() -> bool:
        return await job_state(api, job["id"]) == "cancelled"

    assert await api.wait_for(cancelled)


async def test_a_failed_preview_job_ends_the_stream_with_an_error(api, events, task_queue):
    await api.apply(BACKEND)
    async with session(api) as ws:
        await send(ws, {"id": "1", "type": "subscribe", "payload": {"query": PREVIEW, "variables": {"y": BACKEND}}})
        job = await queued_job(api, "preview")
        event = {"type": "Job", "id": job["id"], "kind": "preview", "state": "failed", "progress": 0.2, "error": "boom"}
        await events.publish(job["id"], event, final=True)
        message = await receive(ws)
        errors = message["payload"]["errors"] if message["type"] == "next" else message["payload"]
        assert errors[0]["extensions"]["code"] == "JOB_FAILED"
        assert "boom" in errors[0]["message"]


@pytest.mark.parametrize(
    ("role", "yaml", "code"),
    [
        ("developer", SECURITY_POLICY, "FORBIDDEN"),
        ("viewer", BACKEND, "FORBIDDEN"),
        ("tier-admin", BACKEND, "FORBIDDEN"),
        ("admin", "kind: Nope\n", "INVALID_MANIFEST"),
    ],
)
async def test_a_preview_of_a_change_the_caller_could_not_make_is_refused(api, task_queue, role, yaml, code):
    await api.apply(TIERS)
    async with session(api, role=role) as ws:
        await send(ws, {"id": "1", "type": "subscribe", "payload": {"query": PREVIEW, "variables": {"y": yaml}}})
        message = await receive(ws)
        errors = message["payload"]["errors"] if message["type"] == "next" else message["payload"]
        assert errors[0]["extensions"]["code"] == code
    assert await api.fetch("SELECT id FROM jobs") == []
    assert await task_queue.messages() == []


async def test_a_preview_deleting_what_the_caller_may_not_touch_is_refused(api, task_queue):
    await api.apply(TIERS + "---" + SECURITY_POLICY)
    deletes = [{"kind": "GlobalNetworkPolicy", "name": "security.known-bad-actors"}]
    async with session(api, role="developer") as ws:
        await send(
            ws, {"id": "1", "type": "subscribe", "payload": {"query": PREVIEW, "variables": {"y": "", "d": deletes}}}
        )
        message = await receive(ws)
        errors = message["payload"]["errors"] if message["type"] == "next" else message["payload"]
        assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert await api.fetch("SELECT id FROM jobs") == []


async def test_job_progress_streams_the_job_until_it_ends(api, events, task_queue):
    job = (await api.data('mutation { recommendPolicies(namespace: "storefront") { id } }', role="developer"))[
        "recommendPolicies"
    ]
    async with session(api, role="viewer") as ws:
        await send(
            ws, {"id": "j", "type": "subscribe", "payload": {"query": JOB_PROGRESS, "variables": {"id": job["id"]}}}
        )
        first = (await receive(ws))["payload"]["data"]["jobProgress"]
        assert (first["id"], first["kind"], first["state"], first["progress"]) == (
            job["id"],
            "recommend",
            "queued",
            0.0,
        )
        base = {"type": "Job", "id": job["id"], "kind": "recommend", "error": None, "result": None}
        await events.publish(job["id"], {**base, "state": "running", "progress": 0.5})
        running = (await receive(ws))["payload"]["data"]["jobProgress"]
        assert (running["state"], running["progress"]) == ("running", 0.5)
        result = {"policies": ["storefront/default.backend"]}
        await events.publish(job["id"], {**base, "state": "succeeded", "progress": 1.0, "result": result}, final=True)
        done = (await receive(ws))["payload"]["data"]["jobProgress"]
        assert (done["state"], done["result"]) == ("succeeded", result)
        assert await receive(ws) == {"id": "j", "type": "complete"}


async def test_job_progress_of_a_finished_job_sends_it_once(api, task_queue):
    job = (await api.data('mutation { recommendPolicies(namespace: "storefront") { id } }'))["recommendPolicies"]
    await api.data("mutation($id: ID!) { cancelJob(id: $id) { state } }", {"id": job["id"]})
    async with session(api) as ws:
        await send(
            ws, {"id": "j", "type": "subscribe", "payload": {"query": JOB_PROGRESS, "variables": {"id": job["id"]}}}
        )
        assert (await receive(ws))["payload"]["data"]["jobProgress"]["state"] == "cancelled"
        assert await receive(ws) == {"id": "j", "type": "complete"}


async def test_job_progress_of_an_unknown_job_is_not_found(api):
    async with session(api) as ws:
        variables = {"id": "00000000-0000-0000-0000-000000000000"}
        await send(ws, {"id": "j", "type": "subscribe", "payload": {"query": JOB_PROGRESS, "variables": variables}})
        message = await receive(ws)
        errors = message["payload"]["errors"] if message["type"] == "next" else message["payload"]
        assert errors[0]["extensions"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("payload", [{}, {"Authorization": "Bearer rf_not-a-token"}, {"token": 42}])
async def test_a_connection_without_a_valid_token_is_rejected(api, payload):
    async with connect(api.server.ws_url, subprotocols=[TRANSPORT_WS]) as ws:
        await send(ws, {"type": "connection_init", "payload": payload})
        with pytest.raises(Exception) as closed:
            await receive(ws)
        assert ws.close_code == 4403, closed.value


async def test_the_token_may_come_in_the_handshake_headers(api):
    headers = {"Authorization": f"Bearer {api.tokens['viewer']}"}
    async with connect(api.server.ws_url, subprotocols=[TRANSPORT_WS], additional_headers=headers) as ws:
        await send(ws, {"type": "connection_init", "payload": {}})
        assert await receive(ws) == {"type": "connection_ack"}


async def test_the_legacy_graphql_ws_protocol_streams_too(api, task_queue):
    job = (await api.data('mutation { recommendPolicies(namespace: "storefront") { id } }'))["recommendPolicies"]
    await api.data("mutation($id: ID!) { cancelJob(id: $id) { state } }", {"id": job["id"]})
    async with connect(api.server.ws_url, subprotocols=[LEGACY_WS]) as ws:
        await send(ws, {"type": "connection_init", "payload": {"token": api.tokens["viewer"]}})
        assert await receive(ws) == {"type": "connection_ack"}
        await send(ws, {"id": "1", "type": "start", "payload": {"query": JOB_PROGRESS, "variables": {"id": job["id"]}}})
        data = await receive(ws)
        assert data["type"] == "data"
        assert data["payload"]["data"]["jobProgress"]["state"] == "cancelled"
        assert await receive(ws) == {"id": "1", "type": "complete"}
