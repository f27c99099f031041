"""Kubernetes NetworkPolicy as Calico evaluates it: default tier, order 1000, implicit isolation."""

from __future__ import annotations

from typing import Any

import pytest
from test_engine_support import flow, namespace, net, np, pod, rule

from ringfence.engine import PolicyEngine
from ringfence.engine.k8s import convert_spec
from ringfence.flows.record import Endpoint
from ringfence.model import (
    IPBlock,
    K8sPeer,
    K8sPolicySpec,
    K8sPort,
    K8sRule,
    KubernetesNetworkPolicy,
    LabelSelector,
    LabelSelectorRequirement,
    ObjectMeta,
    PolicyType,
    PortRange,
)

DB = pod("shop", {"app": "db"}, ip="10.0.0.9", port=5432)
WORLD = [namespace("shop", team="blue"), namespace("blog", team="green")]


def knp(name: str = "db", *, pod_selector: LabelSelector | None = None, **spec: Any) -> KubernetesNetworkPolicy:
    selector = pod_selector if pod_selector is not None else LabelSelector({"app": "db"})
    return KubernetesNetworkPolicy(ObjectMeta(name, "shop"), K8sPolicySpec(pod_selector=selector, **spec))


def ingress_action(policy: KubernetesNetworkPolicy, source: Endpoint, dest: Endpoint = DB, proto: str = "tcp") -> str:
    return PolicyEngine([*WORLD, policy]).evaluate(flow(source, dest, reporter="dst", proto=proto)).action


def only_from(*peers: K8sPeer, ports: tuple[K8sPort, ...] = ()) -> KubernetesNetworkPolicy:
    return knp(policy_types=(PolicyType.INGRESS,), ingress=(K8sRule(ports=ports, peers=peers),))


def test_selected_pod_is_isolated_and_the_trace_names_the_policy() -> None:
    policy = only_from(K8sPeer(pod_selector=LabelSelector({"app": "api"})))
    engine = PolicyEngine([*WORLD, policy])
    denied = engine.evaluate(flow(pod("shop", {"app": "web"}), DB, reporter="dst"))
    allowed = engine.evaluate(flow(pod("shop", {"app": "api"}), DB, reporter="dst"))
    assert denied.trace == ("0|default|shop/knp.default.db|deny|-1",)
    assert allowed.trace == ("0|default|shop/knp.default.db|allow|0",)
    assert allowed.hits[0].kind == "knp"


@pytest.mark.parametrize(
    ("selector", "labels", "selected"),
    [
        (LabelSelector({"app": "db"}), {"app": "db"}, True),
        (LabelSelector({"app": "db"}), {"app": "web"}, False),
        (LabelSelector(match_expressions=(LabelSelectorRequirement("tier", "In", ("a", "b")),)), {"tier": "b"}, True),
        (LabelSelector(match_expressions=(LabelSelectorRequirement("tier", "NotIn", ("a",)),)), {}, True),
        (LabelSelector(match_expressions=(LabelSelectorRequirement("tier", "NotIn", ("a",)),)), {"tier": "a"}, False),
        (LabelSelector(match_expressions=(LabelSelectorRequirement("tier", "Exists"),)), {"tier": "x"}, True),
        (LabelSelector(match_expressions=(LabelSelectorRequirement("tier", "DoesNotExist"),)), {"tier": "x"}, False),
        (LabelSelector(), {"anything": "x"}, True),
    ],
)
def test_pod_selector(selector: LabelSelector, labels: dict[str, str], selected: bool) -> None:
    policy = knp(pod_selector=selector, policy_types=(PolicyType.INGRESS,))
    target = pod("shop", labels, port=80)
    assert ingress_action(policy, net("198.51.100.1"), target) == ("deny" if selected else "allow")


def test_empty_policy_types_mean_ingress_only() -> None:
    policy = knp()
    engine = PolicyEngine([policy])
    assert engine.evaluate(flow(DB, net("198.51.100.1", port=80))).action == "allow"
    assert engine.evaluate(flow(net("198.51.100.1"), DB, reporter="dst")).action == "deny"


def test_empty_policy_types_with_egress_rules_get_the_api_servers_default() -> None:
    # Kubernetes defaults an empty policyTypes to Ingress, plus Egress when egress rules exist
    # (SetDefaults_NetworkPolicy), before Calico ever sees the policy.
    dns_only = K8sRule(ports=(K8sPort("UDP", 53),))
    engine = PolicyEngine([knp(egress=(dns_only,))])
    assert engine.evaluate(flow(DB, net("198.51.100.1", port=53), proto="udp")).action == "allow"
    assert engine.evaluate(flow(DB, net("198.51.100.1", port=80))).action == "deny"
    assert engine.evaluate(flow(net("198.51.100.1"), DB, reporter="dst")).action == "deny"
    assert convert_spec(K8sPolicySpec(egress=(dns_only,))).types == (PolicyType.INGRESS, PolicyType.EGRESS)
    # a staged Kubernetes policy is a Calico resource the API server does not default
    staged = convert_spec(K8sPolicySpec(egress=(dns_only,)), api_defaults=False)
    assert staged.types == (PolicyType.INGRESS,)


@pytest.mark.parametrize(
    ("peer", "source", "action"),
    [
        (K8sPeer(pod_selector=LabelSelector({"app": "api"})), pod("blog", {"app": "api"}), "deny"),
        (K8sPeer(namespace_selector=LabelSelector()), pod("blog", {"app": "x"}), "allow"),
        (K8sPeer(namespace_selector=LabelSelector()), net("198.51.100.1"), "deny"),
        (K8sPeer(namespace_selector=LabelSelector({"team": "green"})), pod("blog", {}), "allow"),
        (K8sPeer(namespace_selector=LabelSelector({"team": "green"})), pod("shop", {}), "deny"),
        (
            K8sPeer(pod_selector=LabelSelector({"app": "api"}), namespace_selector=LabelSelector({"team": "green"})),
            pod("blog", {"app": "api"}),
            "allow",
        ),
        (K8sPeer(ip_block=IPBlock("198.51.100.0/24", ("198.51.100.128/25",))), net("198.51.100.1"), "allow"),
        (K8sPeer(ip_block=IPBlock("198.51.100.0/24", ("198.51.100.128/25",))), net("198.51.100.200"), "deny"),
    ],
)
def test_peers(peer: K8sPeer, source: Endpoint, action: str) -> None:
    assert ingress_action(only_from(peer), source) == action


def test_rule_without_peers_or_ports_allows_everything() -> None:
    policy = knp(policy_types=(PolicyType.INGRESS,), ingress=(K8sRule(),))
    assert ingress_action(policy, net("198.51.100.1"), proto="udp") == "allow"


@pytest.mark.parametrize(
    ("port", "dest_port", "proto", "action"),
    [
        (K8sPort(port=5432), 5432, "tcp", "allow"),  # a port without protocol is TCP
        (K8sPort(port=5432), 5432, "udp", "deny"),
        (K8sPort("TCP", 8000, end_port=8100), 8050, "tcp", "allow"),
        (K8sPort("TCP", 8000, end_port=8100), 8101, "tcp", "deny"),
        (K8sPort("UDP", 53), 53, "udp", "allow"),
        (K8sPort("TCP", None), 1234, "tcp", "allow"),
        (K8sPort("TCP", "postgres"), 5432, "tcp", "uncertain"),  # a named port of the pod: not in the record
    ],
)
def test_ports(port: K8sPort, dest_port: int, proto: str, action: str) -> None:
    dest = pod("shop", {"app": "db"}, port=dest_port)
    assert ingress_action(only_from(ports=(port,)), net("198.51.100.1"), dest, proto) == action


def test_one_rule_per_protocol_then_per_peer_fixes_the_rule_indices() -> None:
    spec = K8sPolicySpec(
        pod_selector=LabelSelector({"app": "db"}),
        ingress=(
            K8sRule(
                ports=(K8sPort("UDP", 53), K8sPort("TCP", 80), K8sPort("TCP", 81)),
                peers=(
                    K8sPeer(pod_selector=LabelSelector({"app": "a"})),
                    K8sPeer(pod_selector=LabelSelector({"app": "b"})),
                ),
            ),
        ),
    )
    rules = convert_spec(spec).ingress
    assert [(r.protocol, r.source.selector) for r in rules] == [
        ("TCP", 'projectcalico.org/orchestrator == "k8s" && app == "a"'),
        ("TCP", 'projectcalico.org/orchestrator == "k8s" && app == "b"'),
        ("UDP", 'projectcalico.org/orchestrator == "k8s" && app == "a"'),
        ("UDP", 'projectcalico.org/orchestrator == "k8s" && app == "b"'),
    ]
    assert rules[0].destination.ports == (PortRange(80, 80), PortRange(81, 81))
    policy = KubernetesNetworkPolicy(ObjectMeta("db", "shop"), spec)
    verdict = PolicyEngine([policy]).evaluate(
        flow(
            pod("shop", {"app": "b"}),
            DB.__class__(**{**DB.__dict__, "port": 53}) if False else pod("shop", {"app": "db"}, port=53),
            reporter="dst",
            proto="udp",
        )
    )
    assert verdict.trace == ("0|default|shop/knp.default.db|allow|3",)


@pytest.mark.parametrize(("calico_order", "first"), [(500.0, "calico"), (2000.0, "kubernetes"), (None, "kubernetes")])
def test_kubernetes_policies_sit_at_order_1000_of_the_default_tier(calico_order: float | None, first: str) -> None:
    resources = [
        knp(policy_types=(PolicyType.INGRESS,), ingress=(K8sRule(),)),
        np("default.calico", "shop", order=calico_order, ingress=[rule("Deny")]),
    ]
    verdict = PolicyEngine(resources).evaluate(flow(net("198.51.100.1"), DB, reporter="dst"))
    assert verdict.action == ("deny" if first == "calico" else "allow")
