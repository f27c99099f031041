"""The storefront lab through the API, with a real Celery worker: recommend, inspect, preview, promote.

Flows come in through the collector's write path (the API does not ingest); everything else is done
over HTTP and WebSocket as a developer of ``storefront`` would.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml as pyyaml
from conftest import ApiServer, open_session, serve_api
from test_api_subscriptions import JOB_PROGRESS, PREVIEW, receive, send, session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the worker tests' harness
from worker_harness import (
    STOREFRONT_RESOURCES,
    WORKLOADS,
    WorkerProcess,
    ingest,
    recent_start,
    storefront_records,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def worker_server(api_database_url, redis_url, tmp_path_factory) -> Iterator[ApiServer]:
    """A second API whose tasks go to a real worker's queue (the session's API keeps a queue nobody reads)."""
    worker = WorkerProcess(api_database_url, redis_url, tmp_path_factory.mktemp("worker"))
    try:
        worker.wait_ready()
        with serve_api(api_database_url, redis_url, worker.queue) as server:
            yield server
    finally:
        worker.stop()


@pytest.fixture
async def lab(worker_server, api_pool) -> AsyncIterator[Any]:
    async for api in open_session(worker_server, api_pool):
        await api.apply(STOREFRONT_RESOURCES)
        assert await ingest(api_pool, storefront_records(recent_start(60), windows=3)) > 0
        yield api


async def stream(api, role: str, query: str, variables: dict[str, Any]) -> list[dict[str, Any]]:
    """Every ``next`` payload of one subscription, until it completes."""
    payloads = []
    async with session(api, role=role) as ws:
        await send(ws, {"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}})
        while True:
            message = await receive(ws)
            if message["type"] == "complete":
                return payloads
            assert message["type"] == "next", message
            assert "errors" not in message["payload"], message
            payloads.append(message["payload"]["data"])


async def test_storefront_through_the_api(lab):
    api = lab
    backend, logging = WORKLOADS["backend"], WORKLOADS["logging"]

    # A developer asks for a recommendation for the backend and follows the job to its end.
    started = await api.data(
        'mutation($w: String!) { recommendPolicies(namespace: "storefront", workload: $w) { id state } }',
        {"w": backend},
        role="developer",
    )
    job_id = started["recommendPolicies"]["id"]
    progress = [p["jobProgress"] for p in await stream(api, "developer", JOB_PROGRESS, {"id": job_id})]
    assert progress[0]["id"] == job_id
    assert progress[-1]["state"] == "succeeded", progress[-1]
    assert [p["progress"] for p in progress] == sorted(p["progress"] for p in progress)
    (recommended,) = progress[-1]["result"]["policies"]
    assert recommended["name"] == "recommended-backend"

    # The recommendation is a learning staged policy in the default tier.
    policy = (
        await api.data(
            """{ policy(kind: "StagedNetworkPolicy", name: "recommended-backend", namespace: "storefront") {
              tier staged stagedAction selector yaml rules { direction destination } } }""",
            role="developer",
        )
    )["policy"]
    assert (policy["tier"], policy["staged"], policy["stagedAction"]) == ("default", True, "Learn")
    assert policy["selector"] == "app == 'backend'"

    # Preview deleting its egress rule to logging: the backend -> logging flows become newly denied.
    document = pyyaml.safe_load(policy["yaml"])
    egress = document["spec"]["egress"]
    document["spec"]["egress"] = [
        rule for rule in egress if rule.get("destination", {}).get("selector") != "app == 'logging'"
    ]
    assert len(document["spec"]["egress"]) == len(egress) - 1
    events = [p["impactPreview"] for p in await stream(api, "developer", PREVIEW, {"y": pyyaml.safe_dump(document)})]
    changed = [e for e in events if e["__typename"] == "ImpactedFlow"]
    assert changed
    for event in changed:
        assert (event["flow"]["sourceNameAggr"], event["flow"]["destNameAggr"]) == (backend, logging)
        assert (event["before"], event["after"]) == ("allow", "deny")
    assert events[-1]["__typename"] == "ImpactSummary"
    assert (events[-1]["newlyDenied"], events[-1]["newlyAllowed"]) == (len(changed), 0)

    # The developer promotes the (unedited) recommendation: it is enforced now, and audited.
    promoted = await api.data(
        """mutation { promoteStagedPolicy(kind: "StagedNetworkPolicy", name: "recommended-backend",
          namespace: "storefront") { kind name staged } }""",
        role="developer",
    )
    assert promoted["promoteStagedPolicy"] == {
        "kind": "NetworkPolicy",
        "name": "default.recommended-backend",
        "staged": False,
    }
    log = await api.data('{ auditLog(name: "default.recommended-backend") { edges { node { actor action kind } } } }')
    actions = [(e["node"]["actor"], e["node"]["action"], e["node"]["kind"]) for e in log["auditLog"]["edges"]]
    assert ("developer-user", "promote", "NetworkPolicy") in actions
    assert ("developer-user", "promote", "StagedNetworkPolicy") in actions
    assert ("developer-user", "recommend", "StagedNetworkPolicy") in actions  # written by the worker for them
