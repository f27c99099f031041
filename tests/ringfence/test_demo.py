"""The storefront demo: its manifests load as Calico would, its flow logs parse and tell the lab's story.

The flow records carry the policy traces Calico Enterprise would write; the strongest check here is that
the policy engine, given the demo's own manifests, computes exactly those traces and actions.
"""

from __future__ import annotations

import ast
import dataclasses
import ipaddress
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.demo import (
    WINDOW_SECONDS,
    demo_windows,
    storefront_flow_lines,
    storefront_manifests,
    storefront_window_lines,
    tiers_manifest,
    twilio_integration_manifest,
)
from ringfence.demo.manifests import PUBLIC_NETS
from ringfence.engine import PolicyEngine, apply_changes, diff_verdicts
from ringfence.flows.formats import parse_calico
from ringfence.manifests import load_manifests
from ringfence.model import (
    Action,
    EntityRule,
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    Namespace,
    PolicyType,
    Rule,
    StagedAction,
    StagedNetworkPolicy,
    Tier,
)
from ringfence.recommend import Scope, recommend

NOW = 1_700_000_123  # 2023-11-14 22:15:23 UTC, not on a window boundary
DAY_WINDOWS = 24 * 3600 // WINDOW_SECONDS
POD_NAME = re.compile(r"[a-z0-9-]+-[bcdfghjklmnpqrstvwxz2456789]{10}-[bcdfghjklmnpqrstvwxz2456789]{5}")

TWILIO_INTEGRATION = twilio_integration_manifest()


@cache
def day_records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in storefront_flow_lines(NOW)]


@cache
def demo_resources() -> tuple[Any, ...]:
    return tuple(load_manifests(storefront_manifests()))


def by_kind_name() -> dict[tuple[str, str], Any]:
    return {(resource.kind, resource.name): resource for resource in demo_resources()}


# --- manifests ---------------------------------------------------------------------------------


def test_manifests_hold_exactly_the_lab_resources():
    assert sorted(by_kind_name()) == [
        ("GlobalNetworkPolicy", "platform.allow-kube-dns"),
        ("GlobalNetworkPolicy", "platform.allow-logging"),
        ("GlobalNetworkPolicy", "security.block-threatfeed"),
        ("GlobalNetworkSet", "public-ip-range"),
        ("GlobalNetworkSet", "threatfeed.feodo-tracker"),
        ("Namespace", "kube-system"),
        ("Namespace", "storefront"),
        ("Tier", "platform"),
        ("Tier", "security"),
    ]


@pytest.mark.parametrize(("name", "order"), [("security", 100.0), ("platform", 200.0)])
def test_tiers_pass_what_they_do_not_decide(name, order):
    tier = by_kind_name()[("Tier", name)]
    assert isinstance(tier, Tier)
    assert (tier.order, tier.default_action) == (order, Action.PASS)


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("storefront", {"twilio": "allowed"}),
        ("kube-system", {}),
    ],
)
def test_namespaces_carry_the_labels_selectors_use(name, labels):
    namespace = by_kind_name()[("Namespace", name)]
    assert isinstance(namespace, Namespace)
    assert labels.items() <= dict(namespace.metadata.labels).items()


@pytest.mark.parametrize(
    ("name", "tier", "types"),
    [
        ("security.block-threatfeed", "security", (PolicyType.INGRESS,)),
        ("platform.allow-kube-dns", "platform", (PolicyType.EGRESS,)),
        ("platform.allow-logging", "platform", (PolicyType.INGRESS,)),
    ],
)
def test_guard_rails_sit_in_their_tiers(name, tier, types):
    policy = by_kind_name()[("GlobalNetworkPolicy", name)]
    assert isinstance(policy, GlobalNetworkPolicy)
    assert (policy.spec.tier, policy.spec.types) == (tier, types)


def test_public_ip_range_is_labelled_public_and_spans_the_public_ipv4_space():
    network_set = by_kind_name()[("GlobalNetworkSet", "public-ip-range")]
    assert isinstance(network_set, GlobalNetworkSet)
    assert dict(network_set.metadata.labels) == {"type": "public"}
    expected = [ipaddress.IPv4Network("0.0.0.0/0")]
    for excluded in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/3"):
        cut = ipaddress.IPv4Network(excluded)
        expected = [part for net in expected for part in (net.address_exclude(cut) if cut.subnet_of(net) else [net])]
    assert sorted(ipaddress.IPv4Network(net) for net in network_set.nets) == sorted(expected)
    assert network_set.nets == PUBLIC_NETS


def test_the_tiers_are_the_manifests_own():
    tiers = load_manifests(tiers_manifest())
    assert tiers == [by_kind_name()[("Tier", "security")], by_kind_name()[("Tier", "platform")]]


@pytest.mark.parametrize("order", [300, 10])
def test_the_twilio_integration_policy_lets_twilio_allowed_namespaces_reach_twilio_only(order):
    (policy,) = load_manifests(twilio_integration_manifest(order))
    assert isinstance(policy, GlobalNetworkPolicy)
    assert (policy.qualified_name, policy.tier, policy.spec.order) == ("platform.twilio-integration", "platform", order)
    assert (policy.spec.namespace_selector, policy.spec.types) == ("twilio == 'allowed'", (PolicyType.EGRESS,))
    assert policy.spec.egress == (
        Rule(action=Action.ALLOW, protocol="TCP", destination=EntityRule(domains=("*.twilio.com",))),
        Rule(action=Action.DENY, destination=EntityRule(selector="type == 'public'")),
    )


def test_the_example_applies_the_labs_twilio_policy():
    # examples/storefront.py needs only httpx and websockets, so it keeps its own copy: it must not drift.
    source = ast.parse((Path(__file__).resolve().parents[2] / "examples" / "storefront.py").read_text())
    (copy,) = (
        ast.literal_eval(node.value)
        for node in source.body
        if isinstance(node, ast.Assign) and [ast.unparse(target) for target in node.targets] == ["TWILIO_INTEGRATION"]
    )
    assert load_manifests(copy) == load_manifests(twilio_integration_manifest())


# --- flow logs: shape ----------------------------------------------------------------------------


def test_every_line_parses_as_a_calico_flow_log_record():
    flows = [parse_calico(record) for record in day_records()]
    assert len(flows) > 5_000
    assert {flow.reporter.value for flow in flows} == {"src", "dst"}


def test_a_day_is_288_complete_windows_ending_before_now():
    records = day_records()
    starts = sorted({record["start_time"] for record in records})
    assert len(starts) == DAY_WINDOWS
    assert starts[-1] + WINDOW_SECONDS <= NOW < starts[-1] + 2 * WINDOW_SECONDS
    assert starts[0] == starts[-1] - (DAY_WINDOWS - 1) * WINDOW_SECONDS
    assert all(record["end_time"] - record["start_time"] == WINDOW_SECONDS for record in records)
    assert all(record["start_time"] % WINDOW_SECONDS == 0 for record in records)


@pytest.mark.parametrize(
    ("now", "hours", "expected"),
    [
        (600, 0, range(600, 600, 300)),
        (600, 1, range(600 - 3600, 600, 300)),
        (899, 1, range(600 - 3600, 600, 300)),
        (900.5, 1, range(900 - 3600, 900, 300)),
    ],
)
def test_demo_windows_are_the_complete_windows_before_now(now, hours, expected):
    assert demo_windows(now, hours) == expected


def test_negative_hours_are_refused():
    with pytest.raises(ValueError, match="hours"):
        demo_windows(NOW, -1)


def test_a_window_must_start_on_a_boundary():
    with pytest.raises(ValueError, match="multiple of 300"):
        storefront_window_lines(NOW)


def test_allowed_flows_are_aggregated_and_denied_ones_name_pods():
    for record in day_records():
        if record["action"] == "allow":
            assert (record["source_ip"], record["source_port"], record["dest_ip"]) == (None, None, None)
            assert record["source_name"] == "-"
            assert record["dest_name"] == "-"
        else:
            assert POD_NAME.fullmatch(record["dest_name"]), record["dest_name"]
            assert record["dest_name"].startswith(record["dest_name_aggr"].removesuffix("*"))
            ipaddress.ip_address(record["dest_ip"])
            ipaddress.ip_address(record["source_ip"])


def test_workload_aggregates_are_pod_prefixes():
    aggregates = {
        record[f"{side}_name_aggr"]
        for record in day_records()
        for side in ("source", "dest")
        if record[f"{side}_type"] == "wep"
    }
    assert "frontend-864f4fcdfd-*" in aggregates
    assert "backend-6cfbdd589f-*" in aggregates
    for aggregate in aggregates:
        assert POD_NAME.fullmatch(aggregate.replace("*", "bbbbb")), aggregate


# --- flow logs: the storefront's traffic ----------------------------------------------------------


def edge_of(record: dict[str, Any]) -> tuple[str, str, str, int, str]:
    source = record["source_name_aggr"].split("-")[0]
    dest = record["dest_name_aggr"] if record["dest_type"] != "wep" else record["dest_name_aggr"].split("-")[0]
    return source, dest, record["proto"], record["dest_port"], record["action"]


SERVICES = ("frontend", "microservice1", "microservice2", "backend", "logging")
EXPECTED_ALLOWED_EDGES = {
    ("frontend", "microservice1", "tcp", 8080, "allow"),
    ("frontend", "microservice2", "tcp", 8080, "allow"),
    ("microservice1", "backend", "tcp", 9000, "allow"),
    ("microservice2", "backend", "tcp", 9000, "allow"),
    *((service, "logging", "tcp", 24224, "allow") for service in SERVICES if service != "logging"),
    *((service, "coredns", "udp", 53, "allow") for service in SERVICES),
    ("microservice2", "pub", "tcp", 443, "allow"),
}


def test_allowed_traffic_is_the_storefront_of_the_design():
    allowed = {edge_of(record) for record in day_records() if record["action"] == "allow"}
    assert allowed == EXPECTED_ALLOWED_EDGES


def test_pod_to_pod_traffic_is_reported_by_both_sides_and_external_by_the_source_only():
    reporters: dict[tuple[str, str, str, int, str], set[str]] = defaultdict(set)
    for record in day_records():
        if record["action"] == "allow":
            reporters[edge_of(record)].add(record["reporter"])
    for edge, seen in reporters.items():
        assert seen == ({"src"} if edge[1] == "pub" else {"src", "dst"}), edge


def test_both_sides_count_the_same_connections_and_bytes():
    totals: dict[tuple[Any, ...], Counter[str]] = defaultdict(Counter)
    for record in day_records():
        if record["dest_type"] == "wep" and record["action"] == "allow":
            key = (record["start_time"], edge_of(record), record["reporter"])
            totals[key]["flows"] += record["num_flows"]
            totals[key]["sent"] += record["bytes_out"]
            totals[key]["received"] += record["bytes_in"]
    for (start, edge, reporter), source in totals.items():
        if reporter != "src":
            continue
        dest = totals[(start, edge, "dst")]
        assert (source["flows"], source["sent"], source["received"]) == (
            dest["flows"],
            dest["received"],
            dest["sent"],
        ), (start, edge)


def test_dns_goes_to_the_kube_dns_service_in_kube_system():
    dns = [record for record in day_records() if record["dest_port"] == 53]
    assert dns
    for record in dns:
        assert (record["proto"], record["dest_namespace"]) == ("udp", "kube-system")
        assert (record["dest_service_namespace"], record["dest_service_name"]) == ("kube-system", "kube-dns")
        assert "k8s-app=kube-dns" in record["dest_labels"]["labels"]


def test_twilio_calls_carry_the_domain_and_come_from_microservice2():
    external = [record for record in day_records() if record["dest_type"] == "net"]
    assert len(external) > DAY_WINDOWS // 2
    for record in external:
        assert record["source_name_aggr"].startswith("microservice2-")
        assert record["dest_domains"] == ["api.twilio.com"]
        assert (record["proto"], record["dest_port"], record["dest_name_aggr"]) == ("tcp", 443, "pub")


def test_denied_probes_come_from_the_threat_feed_and_hit_the_frontend():
    denied = [record for record in day_records() if record["action"] == "deny"]
    assert 5 <= len(denied) < DAY_WINDOWS // 2
    for record in denied:
        assert (record["source_type"], record["source_name_aggr"]) == ("ns", "threatfeed.feodo-tracker")
        assert record["reporter"] == "dst"
        assert record["dest_name_aggr"] == "frontend-864f4fcdfd-*"
        assert record["policies"]["enforced_policies"] == ["0|security|security.block-threatfeed|deny|0"]


def test_traffic_follows_the_day():
    flows_by_hour: Counter[int] = Counter()
    for record in day_records():
        if record["reporter"] == "src":
            flows_by_hour[record["start_time"] % 86_400 // 3_600] += record["num_flows"]
    assert flows_by_hour[15] > 3 * flows_by_hour[3]


# --- flow logs against the policy engine -------------------------------------------------------


def test_recorded_traces_are_what_the_engine_computes_for_the_demo_policies():
    engine = PolicyEngine(demo_resources())
    for record in day_records():
        verdict = engine.evaluate(parse_calico(record))
        policies = record["policies"]
        assert (verdict.action, list(verdict.trace)) == (record["action"], policies["enforced_policies"]), record
        assert (verdict.staged_action, list(verdict.staged_trace)) == (record["action"], policies["pending_policies"])


def test_the_platform_teams_twilio_policy_changes_no_storefront_verdict():
    before = PolicyEngine(demo_resources())
    after = PolicyEngine((*demo_resources(), *load_manifests(TWILIO_INTEGRATION)))
    twilio_hits = 0
    for record in day_records():
        flow = parse_calico(record)
        old, new = before.evaluate(flow), after.evaluate(flow)
        assert not new.uncertain, record
        assert new.action == old.action, record
        twilio_hits += "platform.twilio-integration|allow|0" in "".join(new.trace)
    assert twilio_hits == sum(1 for record in day_records() if record["dest_domains"])


LAB_WORKLOADS = (
    "frontend-864f4fcdfd-*",
    "microservice1-5d8f7c9b6d-*",
    "microservice2-6b5c7f9d84-*",
    "backend-6cfbdd589f-*",
)


def test_the_labs_preview_shows_backend_to_logging_newly_denied_and_nothing_else():
    # The lab: the platform team adds twilio-integration, developers stage the recommended policies and
    # preview enforcing the backend's without its egress rule to logging.
    flows = [parse_calico(record) for record in day_records()]
    resources = [*demo_resources(), *load_manifests(TWILIO_INTEGRATION)]
    network_sets = [r for r in resources if isinstance(r, GlobalNetworkSet)]
    at = datetime.fromtimestamp(NOW, UTC)
    staged = {w: recommend(flows, Scope("storefront", w), at, network_sets=network_sets).policy for w in LAB_WORKLOADS}
    with_staged = [*resources, *staged.values()]
    assert list(diff_verdicts(PolicyEngine(resources), PolicyEngine(with_staged), flows, view="staged")) == []

    backend = staged["backend-6cfbdd589f-*"]
    assert isinstance(backend, StagedNetworkPolicy)
    kept = tuple(rule for rule in backend.spec.egress if rule.destination.selector != "app == 'logging'")
    assert len(kept) == len(backend.spec.egress) - 1
    enforce = dataclasses.replace(backend, staged_action=StagedAction.SET)
    without_rule = dataclasses.replace(enforce, spec=dataclasses.replace(backend.spec, egress=kept))
    changes = list(
        diff_verdicts(
            PolicyEngine(apply_changes(with_staged, [enforce])),
            PolicyEngine(apply_changes(with_staged, [without_rule])),
            flows,
        )
    )
    seen = Counter((c.kind, c.flow.source.name_aggr, c.flow.dest.name_aggr, c.flow.reporter.value) for c in changes)
    backend_to_logging = sum(
        1
        for f in flows
        if f.source.name_aggr.startswith("backend-")
        and f.dest.name_aggr.startswith("logging-")
        and f.reporter.value == "src"
    )
    assert seen == {("newly_denied", "backend-6cfbdd589f-*", "logging-7f9b8c6d5b-*", "src"): backend_to_logging}


# --- determinism and idempotence ------------------------------------------------------------------


def test_the_same_arguments_give_the_same_lines():
    assert list(storefront_flow_lines(NOW, hours=2)) == list(storefront_flow_lines(NOW, hours=2))


def test_a_later_run_repeats_the_shared_windows_byte_for_byte():
    earlier = list(storefront_flow_lines(NOW, hours=2))
    later = list(storefront_flow_lines(NOW + 2 * WINDOW_SECONDS, hours=2))
    shared_start = demo_windows(NOW + 2 * WINDOW_SECONDS, hours=2)[0]
    assert [line for line in earlier if json.loads(line)["start_time"] >= shared_start] == [
        line for line in later if json.loads(line)["start_time"] < demo_windows(NOW, hours=2)[-1] + WINDOW_SECONDS
    ]


def test_the_seed_changes_the_counters_not_the_shape():
    start = demo_windows(NOW, hours=1)[0]
    one = [json.loads(line) for line in storefront_window_lines(start, seed=1)]
    two = [json.loads(line) for line in storefront_window_lines(start, seed=2)]
    pod_edges = [
        (edge_of(r), r["reporter"], r["host"]) for r in one if r["dest_type"] == "wep" and r["action"] == "allow"
    ]
    assert pod_edges == [
        (edge_of(r), r["reporter"], r["host"]) for r in two if r["dest_type"] == "wep" and r["action"] == "allow"
    ]
    assert [r["num_flows"] for r in one] != [r["num_flows"] for r in two]


@settings(max_examples=60, deadline=None)
@given(now=st.integers(min_value=86_400, max_value=4_000_000_000), seed=st.integers(0, 2**32))
def test_any_hour_parses_and_stays_in_its_windows(now, seed):
    windows = demo_windows(now, hours=1)
    lines = list(storefront_flow_lines(now, hours=1, seed=seed))
    assert lines
    for line in lines:
        flow = parse_calico(json.loads(line))
        assert flow.start_time in windows
        assert flow.num_flows >= 1
        assert flow.num_flows_completed <= flow.num_flows_started <= flow.num_flows
