"""The storefront scenario of the Ringfence lab, through the GraphQL API alone.

Run it against a Ringfence that has the storefront demo loaded (``ringfence up --demo``)::

    RINGFENCE_URL=http://127.0.0.1:8080 RINGFENCE_TOKEN=rf_... python examples/storefront.py

It needs only httpx and websockets. Step by step it:

1. applies the platform team's ``platform.twilio-integration`` GlobalNetworkPolicy;
2. lists the tiers and the policy board of the last 24 hours;
3. explains one flow (microservice2 -> api.twilio.com) with its policy trace;
4. recommends staged policies for each workload of ``storefront``, following each job over the
   ``jobProgress`` subscription;
5. lists the staged policies;
6. previews deleting the backend policy's egress rule to logging over the ``impactPreview``
   subscription and prints the backend -> logging flows that would be newly denied;
7. promotes the backend's staged policy (staged -> enforced);
8. reads the audit log.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import yaml
from websockets.asyncio.client import connect

NAMESPACE = "storefront"

TWILIO_INTEGRATION = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: platform.twilio-integration
spec:
  tier: platform
  order: 300
  namespaceSelector: twilio == 'allowed'
  types: [Egress]
  egress:
  - action: Allow
    protocol: TCP
    destination:
      domains: ['*.twilio.com']
  - action: Deny
    destination:
      selector: type == 'public'
"""

APPLY = "mutation($yaml: String!) { applyManifests(yaml: $yaml) { kind name resourceVersion } }"
TIERS = "{ tiers { name order defaultAction policies { kind name namespace order staged } } }"
BOARD = """query($from: DateTime, $to: DateTime) {
  policyBoard(from: $from, to: $to) {
    tiers { name policies { kind name namespace staged allowed denied passed } } } }"""
WORKLOADS = """query($ns: String!) {
  flowGraph(filter: {namespace: $ns}) { nodes { kind namespace name } } }"""
EXPLAIN = """query($flow: FlowInput!) { explainFlow(flow: $flow) { action stagedAction trace } }"""
RECOMMEND = """mutation($ns: String!, $w: String) { recommendPolicies(namespace: $ns, workload: $w) { id state } }"""
JOB_PROGRESS = "subscription($id: ID!) { jobProgress(id: $id) { id state progress error result } }"
STAGED = """query($ns: String) {
  policies(namespace: $ns, includeStaged: true) { kind name namespace tier staged stagedAction selector yaml } }"""
PREVIEW = """subscription($yaml: String!) {
  impactPreview(yaml: $yaml) {
    __typename
    ... on ImpactProgress { processed total }
    ... on ImpactedFlow { before after change flow { startTime reporter sourceNameAggr destNameAggr destPort proto } }
    ... on ImpactSummary { examined changed newlyDenied newlyAllowed uncertain }
  } }"""
PROMOTE = """mutation($kind: String!, $name: String!, $ns: String) {
  promoteStagedPolicy(kind: $kind, name: $name, namespace: $ns) { kind name namespace tier staged } }"""
AUDIT = "{ auditLog(first: 15) { totalCount edges { node { at actor action kind namespace name } } } }"


class ApiError(RuntimeError):
    """The API answered with errors."""


class Ringfence:
    """A small GraphQL client: queries and mutations over HTTP, subscriptions over graphql-transport-ws."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.http = httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=httpx.Timeout(60.0)
        )

    async def query(self, document: str, **variables: Any) -> dict[str, Any]:
        response = await self.http.post("/graphql", json={"query": document, "variables": variables})
        body = response.json()
        if body.get("errors"):
            raise ApiError(json.dumps(body["errors"], indent=2))
        response.raise_for_status()
        data: dict[str, Any] = body["data"]
        return data

    async def subscribe(self, document: str, **variables: Any) -> AsyncIterator[dict[str, Any]]:
        """Yield each result of one subscription until the server completes it."""
        ws_url = self.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/graphql"
        async with connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {self.token}"}}))
            ack = json.loads(await ws.recv())
            if ack.get("type") != "connection_ack":
                raise ApiError(f"connection refused: {ack}")
            payload = {"query": document, "variables": variables}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            async for raw in ws:
                message = json.loads(raw)
                if message["type"] == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                elif message["type"] == "next":
                    if message["payload"].get("errors"):
                        raise ApiError(json.dumps(message["payload"]["errors"], indent=2))
                    yield message["payload"]["data"]
                elif message["type"] == "error":
                    raise ApiError(json.dumps(message["payload"], indent=2))
                elif message["type"] == "complete":
                    return

    async def close(self) -> None:
        await self.http.aclose()


def heading(text: str) -> None:
    print(f"\n== {text}")


async def run(api: Ringfence) -> None:
    heading("1. The platform team applies platform.twilio-integration")
    for resource in (await api.query(APPLY, yaml=TWILIO_INTEGRATION))["applyManifests"]:
        print(f"applied {resource['kind']} {resource['name']} (version {resource['resourceVersion']})")

    heading("2. Tiers and the policy board of the last 24 hours")
    for tier in (await api.query(TIERS))["tiers"]:
        print(f"tier {tier['name']} (order {tier['order']}, default action {tier['defaultAction']})")
        for policy in tier["policies"]:
            where = f"{policy['namespace']}/" if policy["namespace"] else ""
            print(f"  {policy['kind']} {where}{policy['name']} order={policy['order']}")
    now = datetime.now(UTC)
    board = await api.query(BOARD, **{"from": (now - timedelta(hours=24)).isoformat(), "to": now.isoformat()})
    for tier in board["policyBoard"]["tiers"]:
        for policy in tier["policies"]:
            staged = " (staged)" if policy["staged"] else ""
            print(
                f"board {tier['name']}/{policy['name']}{staged}: allowed={policy['allowed']} "
                f"denied={policy['denied']} passed={policy['passed']}"
            )

    heading("3. Explain a flow: microservice2 -> api.twilio.com:443")
    flow = {
        "sourceType": "wep",
        "sourceNamespace": NAMESPACE,
        "sourceNameAggr": "microservice2-*",
        "sourceLabels": ["app=microservice2"],
        "destType": "net",
        "destNameAggr": "pub",
        "destIp": "34.203.254.1",
        "destDomains": ["api.twilio.com"],
        "destPort": 443,
        "proto": "tcp",
        "reporter": "src",
    }
    verdict = (await api.query(EXPLAIN, flow=flow))["explainFlow"]
    print(f"verdict: {verdict['action']} (staged view: {verdict['stagedAction']})")
    for hit in verdict["trace"]:
        print(f"  trace {hit}")

    heading("4. Recommend staged policies for each workload")
    nodes = (await api.query(WORKLOADS, ns=NAMESPACE))["flowGraph"]["nodes"]
    workloads = sorted(n["name"] for n in nodes if n["kind"] == "workload" and n["namespace"] == NAMESPACE)
    for workload in workloads:
        job = (await api.query(RECOMMEND, ns=NAMESPACE, w=workload))["recommendPolicies"]
        final = job
        async for event in api.subscribe(JOB_PROGRESS, id=job["id"]):
            final = event["jobProgress"]
        if final["state"] != "succeeded":
            raise ApiError(f"recommendation for {workload} {final['state']}: {final.get('error')}")
        names = [p.get("key") or p.get("name") for p in (final.get("result") or {}).get("policies", [])]
        print(f"{workload}: job {job['id']} {final['state']} -> {', '.join(names) or 'nothing new'}")

    heading("5. Staged policies")
    policies = (await api.query(STAGED, ns=NAMESPACE))["policies"]
    staged = [p for p in policies if p["staged"]]
    for policy in staged:
        print(f"{policy['kind']} {policy['namespace']}/{policy['name']} stagedAction={policy['stagedAction']}")
        print(f"  selector: {policy['selector']}")
    backend = next(p for p in staged if p["selector"] == "app == 'backend'")

    heading("6. Preview deleting the backend policy's egress rule to logging")
    document = yaml.safe_load(backend["yaml"])
    egress = document["spec"].get("egress") or []
    document["spec"]["egress"] = [
        rule for rule in egress if "logging" not in str(rule.get("destination", {}).get("selector", ""))
    ]
    print(f"egress rules: {len(egress)} -> {len(document['spec']['egress'])}")
    async for event in api.subscribe(PREVIEW, yaml=yaml.safe_dump(document)):
        item = event["impactPreview"]
        if item["__typename"] == "ImpactedFlow":
            f = item["flow"]
            print(
                f"newly {item['after']}: {f['sourceNameAggr']} -> {f['destNameAggr']}:{f['destPort']}/{f['proto']} "
                f"({f['reporter']}, {f['startTime']}) was {item['before']}"
            )
        elif item["__typename"] == "ImpactSummary":
            print(
                f"summary: examined={item['examined']} changed={item['changed']} newlyDenied={item['newlyDenied']} "
                f"newlyAllowed={item['newlyAllowed']} uncertain={item['uncertain']}"
            )

    heading("7. Promote the backend's staged policy")
    promoted = await api.query(PROMOTE, kind=backend["kind"], name=backend["name"], ns=NAMESPACE)
    policy = promoted["promoteStagedPolicy"]
    print(f"enforced: {policy['kind']} {policy['namespace']}/{policy['name']} in tier {policy['tier']}")

    heading("8. The audit log")
    log = (await api.query(AUDIT))["auditLog"]
    print(f"{log['totalCount']} entries; the newest:")
    for edge in log["edges"]:
        entry = edge["node"]
        where = f"{entry['namespace']}/" if entry["namespace"] else ""
        print(f"  {entry['at']} {entry['actor']} {entry['action']} {entry['kind']} {where}{entry['name']}")


async def main() -> int:
    url = os.environ.get("RINGFENCE_URL", "http://127.0.0.1:8080")
    token = os.environ.get("RINGFENCE_TOKEN")
    if not token:
        print("set RINGFENCE_TOKEN (ringfence up prints an admin token)", file=sys.stderr)
        return 2
    api = Ringfence(url, token)
    try:
        await run(api)
    except ApiError as error:
        print(f"the API refused: {error}", file=sys.stderr)
        return 1
    finally:
        await api.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
