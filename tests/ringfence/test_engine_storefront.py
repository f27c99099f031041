"""The storefront scenario of design.md, from manifests to verdicts and an impact preview."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import pytest
from support.storefront import NAMESPACES, documents
from test_engine_support import flow, net, pod, set_endpoint

from ringfence.demo import network_set_manifest, tiers_manifest
from ringfence.engine import PolicyEngine, apply_changes, diff_verdicts
from ringfence.flows.record import Endpoint
from ringfence.manifests import load_manifests
from ringfence.model import NetworkPolicy, Resource

# Public IPv4 space: everything but 0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12, 192.168/16, 224/3.
PUBLIC_NETS = [
    "1.0.0.0/8", "2.0.0.0/7", "4.0.0.0/6", "8.0.0.0/7", "11.0.0.0/8", "12.0.0.0/6", "16.0.0.0/4", "32.0.0.0/3",
    "64.0.0.0/3", "96.0.0.0/6", "100.0.0.0/10", "100.128.0.0/9", "101.0.0.0/8", "102.0.0.0/7", "104.0.0.0/5",
    "112.0.0.0/5", "120.0.0.0/6", "124.0.0.0/7", "126.0.0.0/8", "128.0.0.0/3", "160.0.0.0/5", "168.0.0.0/8",
    "169.0.0.0/9", "169.128.0.0/10", "169.192.0.0/11", "169.224.0.0/12", "169.240.0.0/13", "169.248.0.0/14",
    "169.252.0.0/15", "169.255.0.0/16", "170.0.0.0/7", "172.0.0.0/12", "172.32.0.0/11", "172.64.0.0/10",
    "172.128.0.0/9", "173.0.0.0/8", "174.0.0.0/7", "176.0.0.0/4", "192.0.0.0/9", "192.128.0.0/11",
    "192.160.0.0/13", "192.169.0.0/16", "192.170.0.0/15", "192.172.0.0/14", "192.176.0.0/12", "192.192.0.0/10",
    "193.0.0.0/8", "194.0.0.0/7", "196.0.0.0/6", "200.0.0.0/5", "208.0.0.0/4",
]  # fmt: skip

# The lab's twilio-integration policy, restricted here to port 443.
TWILIO_443 = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: platform.twilio-integration}
spec:
  tier: platform
  order: 10
  namespaceSelector: twilio == 'allowed'
  types: [Egress]
  egress:
    - action: Allow
      protocol: TCP
      destination: {domains: ['*.twilio.com'], ports: [443]}
    - action: Deny
      destination: {selector: type == 'public'}
"""

BACKEND = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: backend, namespace: storefront}
spec:
  selector: app == 'backend'
  types: [Ingress, Egress]
  ingress:
    - action: Allow
      protocol: TCP
      source: {selector: "app in {'microservice1', 'microservice2'}"}
      destination: {ports: [5432]}
  egress:
    - action: Allow
      protocol: UDP
      destination: {namespaceSelector: projectcalico.org/name == 'kube-system', ports: [53]}
    - action: Allow
      protocol: TCP
      destination: {selector: app == 'logging', ports: [24224]}
"""

MANIFESTS = documents(
    NAMESPACES,
    tiers_manifest(),
    network_set_manifest("public-ip-range", {"type": "public"}, PUBLIC_NETS),
    TWILIO_443,
    BACKEND,
)


PODS = {
    name: pod("storefront", {"app": name}, ip=f"10.244.1.{index + 10}", name_aggr=f"{name}-6cfbdd589f-*")
    for index, name in enumerate(["frontend", "microservice1", "microservice2", "backend", "logging"])
}
DNS = pod("kube-system", {"k8s-app": "kube-dns"}, ip="10.96.0.10", port=53, name_aggr="coredns-76f75df574-*")


def to(name: str, port: int) -> Endpoint:
    target = PODS[name]
    return Endpoint(target.type, target.name_aggr, target.namespace, None, target.labels, target.ip, port)


@cache
def resources() -> tuple[Resource, ...]:
    return tuple(load_manifests(MANIFESTS))


@cache
def engine() -> PolicyEngine:
    return PolicyEngine(resources())


PROFILE = "__PROFILE__|__PROFILE__.kns.storefront|allow|0"


def test_microservice2_reaches_twilio_through_the_platform_policy() -> None:
    record = flow(PODS["microservice2"], net("34.226.36.50", port=443), domains=["api.twilio.com"])
    verdict = engine().evaluate(record)
    assert (verdict.action, verdict.trace) == ("allow", ("0|platform|platform.twilio-integration|allow|0",))


def test_twilio_reported_as_the_public_network_set_with_its_address_aggregated() -> None:
    record = flow(PODS["microservice2"], set_endpoint("public-ip-range", port=443), domains=["api.twilio.com"])
    assert engine().evaluate(record).action == "allow"


@pytest.mark.parametrize(
    ("source", "dest", "domains"),
    [
        ("backend", net("93.184.216.34", port=443), ()),
        ("microservice2", net("93.184.216.34", port=443), ("example.com",)),
        ("frontend", net("34.226.36.50", port=80), ("api.twilio.com",)),  # twilio, but not on 443
        ("frontend", set_endpoint("public-ip-range", port=443), ()),
    ],
)
def test_other_public_egress_of_storefront_pods_is_denied(
    source: str, dest: Endpoint, domains: tuple[str, ...]
) -> None:
    verdict = engine().evaluate(flow(PODS[source], dest, domains=domains))
    assert (verdict.action, verdict.trace) == ("deny", ("0|platform|platform.twilio-integration|deny|1",))


def test_internal_traffic_passes_the_platform_tier_to_the_profile() -> None:
    verdict = engine().evaluate(flow(PODS["frontend"], to("microservice1", 8080)))
    assert verdict.action == "allow"
    assert verdict.trace == ("0|platform|platform.twilio-integration|pass|-1", f"1|{PROFILE}")


def test_backend_egress_goes_through_the_default_tier() -> None:
    dns = engine().evaluate(flow(PODS["backend"], DNS, proto="udp"))
    assert dns.trace == (
        "0|platform|platform.twilio-integration|pass|-1",
        "1|default|storefront/default.backend|allow|0",
    )
    logging = engine().evaluate(flow(PODS["backend"], to("logging", 24224)))
    assert logging.trace[-1] == "1|default|storefront/default.backend|allow|1"
    elsewhere = engine().evaluate(flow(PODS["backend"], to("frontend", 8080)))
    assert (elsewhere.action, elsewhere.trace[-1]) == ("deny", "1|default|storefront/default.backend|deny|-1")


def test_ingress_is_not_governed_by_the_egress_only_platform_policy() -> None:
    verdict = engine().evaluate(flow(PODS["microservice1"], to("backend", 5432), reporter="dst"))
    assert verdict.trace == ("0|default|storefront/default.backend|allow|0",)
    verdict = engine().evaluate(flow(PODS["frontend"], to("backend", 5432), reporter="dst"))
    assert verdict.trace == ("0|default|storefront/default.backend|deny|-1",)


def test_namespaces_without_the_twilio_label_are_not_governed() -> None:
    other = pod("blog", {"app": "web"}, ip="10.244.2.9")
    verdict = engine().evaluate(flow(other, net("93.184.216.34", port=443)))
    assert verdict.trace == ("0|__PROFILE__|__PROFILE__.kns.blog|allow|0",)


def test_public_egress_with_its_address_aggregated_away_is_uncertain() -> None:
    verdict = engine().evaluate(flow(PODS["frontend"], net(name_aggr="pub", port=443)))
    assert verdict.action == "uncertain"
    assert engine().evaluate(flow(PODS["frontend"], net(name_aggr="pvt", port=443))).action == "allow"


def test_removing_the_backend_logging_rule_newly_denies_backend_to_logging() -> None:
    (backend,) = [r for r in resources() if isinstance(r, NetworkPolicy)]
    trimmed = NetworkPolicy(backend.metadata, replace(backend.spec, egress=backend.spec.egress[:1]))
    after = PolicyEngine(apply_changes(resources(), upserts=[trimmed]))
    records = [
        flow(PODS["backend"], to("logging", 24224)),
        flow(PODS["backend"], DNS, proto="udp"),
        flow(PODS["frontend"], to("logging", 24224)),
        flow(PODS["microservice2"], net("34.226.36.50", port=443), domains=["api.twilio.com"]),
    ]
    changes = list(diff_verdicts(engine(), after, records))
    assert [(c.flow.dest.name_aggr, c.kind, c.before, c.after) for c in changes] == [
        ("logging-6cfbdd589f-*", "newly_denied", "allow", "deny")
    ]
    assert changes[0].after_trace[-1] == "1|default|storefront/default.backend|deny|-1"
