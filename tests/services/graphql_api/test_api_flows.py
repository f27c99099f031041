"""flows, flowGraph, policyBoard and explainFlow over flows stored through the collector's write path.

Expected values are computed here from the raw flow-log lines, independently of the store's SQL.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from api_manifests import BACKEND, TIERS, TWILIO

from ringfence.flows.hits import hit_policy_name, parse_hit
from services.collector.parse import TimeWindow, parse_lines
from services.collector.store import FlowWriter, WriteBatch

FLOW_LOG = Path(__file__).resolve().parents[2] / "data" / "flows" / "calico-flows.log"

FLOWS = """query($f: FlowFilter, $first: Int, $after: String) {
  flows(filter: $f, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { cursor node { startTime endTime reporter action proto destPort sourceType sourceNamespace sourceNameAggr
      destType destNamespace destNameAggr destDomains numFlows bytesIn bytesOut policies pendingPolicies } } } }"""


def records() -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in FLOW_LOG.read_bytes().splitlines() if line.strip()]


@pytest.fixture
async def stored_flows(api) -> list[dict[str, Any]]:
    """The sample flow log, stored as the collector stores it (after emptying the flow tables)."""
    lines = [line for line in FLOW_LOG.read_bytes().splitlines() if line.strip()]
    offsets = [sum(len(line) + 1 for line in lines[:index]) for index in range(len(lines))]
    chunk = parse_lines(lines, offsets, source="api-test", first_line_no=1, fmt=None, window=TimeWindow(0, 2**40))
    assert chunk.rejects == []
    writer = FlowWriter(api.pool, clock=lambda: datetime.now(UTC))
    await writer.write(
        WriteBatch(source="api-test", batch_key=None, chunk=chunk, lines=lines, offsets=offsets, first_line_no=1)
    )
    return records()


def side_namespaces(record: dict[str, Any]) -> set[str]:
    return {record["source_namespace"], record["dest_namespace"]} - {"-"}


async def all_pages(api, flow_filter: dict[str, Any] | None, first: int) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        page = (await api.data(FLOWS, {"f": flow_filter, "first": first, "after": after}, role="viewer"))["flows"]
        nodes += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]


async def test_flows_page_through_every_record_newest_first(api, stored_flows):
    nodes = await all_pages(api, None, first=4)
    assert len(nodes) == len(stored_flows)
    starts = [node["startTime"] for node in nodes]
    assert starts == sorted(starts, reverse=True)
    assert sum(node["numFlows"] for node in nodes) == sum(record["num_flows"] for record in stored_flows)
    assert Counter(node["destNameAggr"] for node in nodes) == Counter(r["dest_name_aggr"] for r in stored_flows)


@pytest.mark.parametrize(
    ("flow_filter", "matches"),
    [
        ({"namespace": "kube-system"}, lambda r: "kube-system" in side_namespaces(r)),
        ({"action": "deny"}, lambda r: r["action"] == "deny"),
        ({"reporter": "dst", "destPort": 5432}, lambda r: r["reporter"] == "dst" and r["dest_port"] == 5432),
        ({"proto": "udp"}, lambda r: r["proto"] == "udp"),
        (
            {"namespace": "storefront", "workload": "backend-6cfbdd589f-*"},
            lambda r: "backend-6cfbdd589f-*" in (r["source_name_aggr"], r["dest_name_aggr"]),
        ),
        ({"from": "2024-06-13T00:05:00Z"}, lambda r: r["start_time"] >= 1718237100),
        ({"to": "2024-06-13T00:05:00Z"}, lambda r: r["start_time"] < 1718237100),
        (
            {"policy": "platform.twilio-integration"},
            lambda r: any(
                hit_policy_name(parse_hit(h)) == "platform.twilio-integration"
                for key in ("enforced_policies", "pending_policies", "all_policies")
                for h in r["policies"].get(key) or []
            ),
        ),
    ],
)
async def test_flow_filters(api, stored_flows, flow_filter, matches):
    expected = [record for record in stored_flows if matches(record)]
    assert expected, "the sample must exercise the filter"
    page = (await api.data(FLOWS, {"f": flow_filter, "first": 100}))["flows"]
    assert page["totalCount"] == len(expected)
    assert sum(edge["node"]["numFlows"] for edge in page["edges"]) == sum(r["num_flows"] for r in expected)


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"first": 1001}, "first"),
        ({"first": -1}, "first"),
        ({"after": "garbage!"}, "after"),
        ({"f": {"from": "2024-06-14T00:00:00Z", "to": "2024-06-13T00:00:00Z"}}, "filter.from"),
    ],
)
async def test_bad_flow_queries_are_refused(api, variables, field):
    query = """query($f: FlowFilter, $first: Int, $after: String) {
      flows(filter: $f, first: $first, after: $after) { pageInfo { hasNextPage } } }"""
    error = await api.error(query, variables)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == field


async def test_flow_graph_has_a_node_per_endpoint_and_an_edge_per_port_and_verdict(api, stored_flows):
    query = """query($f: FlowFilter) { flowGraph(filter: $f) {
      nodes { id kind namespace name } edges { source target destPort proto action numFlows reporters } } }"""
    graph = (await api.data(query, {"f": {"namespace": "storefront"}}))["flowGraph"]
    names = {(node["kind"], node["name"]) for node in graph["nodes"]}
    storefront = [r for r in stored_flows if "storefront" in side_namespaces(r)]
    for record in storefront:
        if record["dest_type"] == "wep":
            assert ("workload", record["dest_name_aggr"]) in names
    assert ("namespace", "storefront") in names
    assert ("namespace", "kube-system") in names
    ids = {node["id"] for node in graph["nodes"]}
    assert all(edge["source"] in ids and edge["target"] in ids for edge in graph["edges"])
    # Both reporters of a connection count it once: each edge carries the larger report.
    expected: dict[tuple[Any, ...], dict[str, int]] = defaultdict(dict)
    for r in storefront:
        key = (r["source_name_aggr"], r["dest_name_aggr"], r["dest_port"], r["action"])
        expected[key][r["reporter"]] = expected[key].get(r["reporter"], 0) + r["num_flows"]
    by_key = {
        (
            e["source"].rsplit("/", 1)[-1].split(":")[-1],
            e["target"].rsplit("/", 1)[-1].split(":")[-1],
            e["destPort"],
            e["action"],
        ): e
        for e in graph["edges"]
    }
    for key, reports in expected.items():
        assert by_key[key]["numFlows"] == max(reports.values()), key
        assert sorted(by_key[key]["reporters"]) == sorted(reports)
    error = await api.error(query, {"f": {"policy": "x"}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_policy_board_counts_every_hit_per_tier_policy_and_rule(api, stored_flows):
    await api.apply(TIERS)
    query = """{ policyBoard { from to tiers { name order policies { kind name namespace staged allowed denied passed
      rules { ruleIndex allowed denied passed } } } } }"""
    board = (await api.data(query, role="developer"))["policyBoard"]
    tier_names = [tier["name"] for tier in board["tiers"]]
    assert tier_names[:3] == ["security", "platform", "default"]
    totals: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for record in stored_flows:
        policies = record["policies"]
        enforced = policies.get("enforced_policies") or policies.get("all_policies") or []
        for text in enforced:
            hit = parse_hit(text)
            if hit.kind != "pro":
                totals[(hit.tier, hit_policy_name(hit))][hit.action] += record["num_flows"]
    found = {
        (tier["name"], policy["name"]): policy
        for tier in board["tiers"]
        for policy in tier["policies"]
        if not policy["staged"]
    }
    for key, actions in totals.items():
        policy = found[key]
        assert (policy["allowed"], policy["denied"], policy["passed"]) == (
            actions["allow"],
            actions["deny"],
            actions["pass"],
        ), key
        assert sum(rule["allowed"] + rule["denied"] + rule["passed"] for rule in policy["rules"]) == sum(
            actions.values()
        )


async def test_policy_board_window_excludes_flows_outside_it(api, stored_flows):
    query = """query($from: DateTime, $to: DateTime) {
      policyBoard(from: $from, to: $to) { tiers { name policies { name passed } } } }"""
    board = (await api.data(query, {"from": "2025-01-01T00:00:00Z", "to": "2025-01-02T00:00:00Z"}))["policyBoard"]
    assert all(policy["passed"] == 0 for tier in board["tiers"] for policy in tier["policies"])
    error = await api.error(query, {"from": "2025-01-02T00:00:00Z", "to": "2025-01-01T00:00:00Z"})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


EXPLAIN = """query($f: FlowInput!) { explainFlow(flow: $f) { action stagedAction trace stagedTrace } }"""


async def test_explain_flow_evaluates_the_stored_policies(api):
    from api_manifests import BACKEND, STAGED_FRONTEND

    await api.apply(BACKEND + "---" + STAGED_FRONTEND)
    to_logging = {
        "sourceNamespace": "storefront",
        "sourceNameAggr": "backend-*",
        "sourceLabels": ["app=backend"],
        "destNamespace": "storefront",
        "destNameAggr": "logging-*",
        "destLabels": ["app=logging"],
        "destPort": 24224,
        "reporter": "src",
    }
    verdict = (await api.data(EXPLAIN, {"f": to_logging}, role="viewer"))["explainFlow"]
    assert verdict["action"] == "allow"
    assert verdict["trace"] == ["0|default|storefront/default.backend|allow|0"]
    to_public = {
        **to_logging,
        "destType": "net",
        "destNamespace": None,
        "destNameAggr": "pub",
        "destLabels": [],
        "destIp": "203.0.113.9",
        "destPort": 443,
    }
    verdict = (await api.data(EXPLAIN, {"f": to_public}))["explainFlow"]
    assert verdict["action"] == "deny"
    assert verdict["trace"][-1].endswith("|deny|-1")
    frontend = {
        **to_logging,
        "sourceNameAggr": "frontend-*",
        "sourceLabels": ["app=frontend"],
        "destNameAggr": "microservice1-*",
        "destLabels": ["app=microservice1"],
        "destPort": 8080,
    }
    verdict = (await api.data(EXPLAIN, {"f": frontend}))["explainFlow"]
    assert (verdict["action"], verdict["stagedAction"]) != ("deny", "deny")
    assert any("staged:" in hit or "frontend" in hit for hit in verdict["stagedTrace"])


@pytest.mark.parametrize("field", ["sourceType", "reporter", "action"])
async def test_explain_flow_refuses_unknown_enumerations(api, field):
    error = await api.error(EXPLAIN, {"f": {field: "bogus"}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == f"flow.{field}"


async def test_policy_statistics_come_from_recorded_traces(api, stored_flows):
    await api.apply(TIERS + "---" + TWILIO + "---" + BACKEND)
    expected: Counter[str] = Counter()
    for record in stored_flows:
        policies = record["policies"]
        for text in policies.get("enforced_policies") or policies.get("all_policies") or []:
            hit = parse_hit(text)
            if hit_policy_name(hit) == "platform.twilio-integration":
                expected[hit.action] += record["num_flows"]
    query = """query($k: String!, $n: String!, $ns: String) { policy(kind: $k, name: $n, namespace: $ns) {
      statistics { allowed denied passed source rules { ruleIndex allowed denied passed } } } }"""
    twilio = (await api.data(query, {"k": "GlobalNetworkPolicy", "n": "twilio-integration"}))["policy"]["statistics"]
    assert (twilio["allowed"], twilio["denied"], twilio["passed"]) == (
        expected["allow"],
        expected["deny"],
        expected["pass"],
    )
    assert twilio["source"] == "recorded"
    window = {"k": "NetworkPolicy", "n": "backend", "ns": "storefront"}
    quiet = (await api.data(query, window))["policy"]["statistics"]
    assert quiet == {"allowed": 0, "denied": 0, "passed": 0, "source": "none", "rules": []}
