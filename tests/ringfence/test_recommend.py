"""Recommendations, checked through the policy engine: the learned policy allows what was seen, nothing else."""

from __future__ import annotations

import dataclasses
import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from support.storefront import NAMESPACES, documents, public_ips

from ringfence.demo import network_set_manifest, tiers_manifest, twilio_integration_manifest
from ringfence.engine import PolicyEngine
from ringfence.flows.record import Endpoint, EndpointType, Flow, FlowAction, Reporter, label_pairs
from ringfence.manifests import dump_manifests, load_manifests
from ringfence.model import PolicyType, PortRange, Resource, StagedAction, StagedNetworkPolicy
from ringfence.recommend import Outcome, RecommendationError, RecommendationStatus, Scope, recommend
from ringfence.recommend.labels import equality_selector, stable_labels
from ringfence.recommend.peers import is_cluster_name
from ringfence.recommend.ports import merge_ports, rule_protocol
from ringfence.recommend.scope import workload_base_name

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T0 = int(NOW.timestamp()) - 3600


def _public_cidrs() -> list[str]:
    """Every address outside RFC 1918 and IPv6 ULA: what the platform team's "public" set holds."""
    private = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]
    remaining = [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
    for excluded in private:
        remaining = [
            part
            for net in remaining
            for part in (
                net.address_exclude(excluded) if net.version == excluded.version and excluded.subnet_of(net) else [net]
            )
        ]
    return sorted(str(net) for net in remaining)


STOREFRONT = documents(
    NAMESPACES,
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: payments}",
    tiers_manifest(),
    public_ips(_public_cidrs()),
    network_set_manifest("partners", {"role": "partner"}, ["10.99.0.0/16"]),
    twilio_integration_manifest(order=10),
)


def pod(app: str, namespace: str = "storefront", *, extra: dict[str, str] | None = None) -> Endpoint:
    labels = {"app": app, "pod-template-hash": "6cfbdd589f", "projectcalico.org/namespace": namespace}
    labels.update(extra or {})
    return Endpoint(EndpointType.WORKLOAD, f"{app}-6cfbdd589f-*", namespace, labels=label_pairs(labels))


def net(kind: str, ip: str | None = None) -> Endpoint:
    return Endpoint(EndpointType.NETWORK, kind, ip=ip)


def netset(name: str, labels: dict[str, str] | None = None) -> Endpoint:
    return Endpoint(EndpointType.NETWORK_SET, name, labels=label_pairs(labels))


def flow(
    source: Endpoint,
    dest: Endpoint,
    port: int | None = 8080,
    *,
    proto: str = "tcp",
    reporter: Reporter = Reporter.SOURCE,
    action: FlowAction = FlowAction.ALLOW,
    domains: tuple[str, ...] = (),
    start: int = T0,
    num_flows: int = 1,
) -> Flow:
    return Flow(
        start_time=start,
        end_time=start + 300,
        source=source,
        dest=dataclasses.replace(dest, port=port),
        proto=proto,
        reporter=reporter,
        action=action,
        dest_domains=domains,
        num_flows=num_flows,
        bytes_in=100,
        bytes_out=50,
    )


def both_sides(source: Endpoint, dest: Endpoint, port: int | None = 8080, **kwargs: object) -> list[Flow]:
    """The two records Calico writes for a pod-to-pod connection."""
    return [flow(source, dest, port, **kwargs), flow(source, dest, port, reporter=Reporter.DESTINATION, **kwargs)]  # type: ignore[arg-type]


KUBE_DNS = Endpoint(
    EndpointType.WORKLOAD,
    "coredns-5d78c9869d-*",
    "kube-system",
    labels=label_pairs({"k8s-app": "kube-dns", "pod-template-hash": "5d78c9869d"}),
)
BACKEND_SCOPE = Scope("storefront", "backend-6cfbdd589f-*")


def storefront_flows() -> list[Flow]:
    frontend, ms1, ms2, backend, logging = (
        pod(a) for a in ("frontend", "microservice1", "microservice2", "backend", "logging")
    )
    flows: list[Flow] = []
    flows += both_sides(frontend, ms1, 8080)
    flows += both_sides(frontend, ms2, 8080)
    flows += both_sides(ms1, backend, 8080)
    flows += both_sides(ms2, backend, 8081)
    for service in (frontend, ms1, ms2, backend):
        flows += both_sides(service, logging, 9200)
    for service in (frontend, ms1, ms2, backend, logging):
        flows += both_sides(service, KUBE_DNS, 53, proto="udp")
    flows.append(flow(ms2, net("pub"), 443, domains=("api.twilio.com",)))
    flows.append(flow(backend, net("pvt"), 5432))
    flows.append(flow(backend, net("pvt", "10.20.0.5"), 6379))
    flows.append(flow(backend, netset("partners"), 443))
    flows.append(flow(net("pvt"), backend, 8080, reporter=Reporter.DESTINATION))
    flows.append(
        flow(pod("reports", "payments", extra={"tier": "batch"}), backend, 8443, reporter=Reporter.DESTINATION)
    )
    flows.append(flow(backend, pod("ledger", "payments"), 7000))
    flows.append(flow(backend, pod("ledger", "payments"), 7001))
    flows.append(flow(backend, net("pub"), 22, action=FlowAction.DENY))  # denied: never learned
    return flows


def engine_with(policy: Resource | None) -> PolicyEngine:
    resources = load_manifests(STOREFRONT)
    if policy is not None:
        # Round trip through YAML: what is stored is what the engine sees.
        resources += load_manifests(dump_manifests([policy]))
    return PolicyEngine(resources)


def recommend_backend(flows: list[Flow] | None = None) -> StagedNetworkPolicy:
    sets = [r for r in load_manifests(STOREFRONT) if r.kind == "GlobalNetworkSet"]
    return recommend(flows or storefront_flows(), BACKEND_SCOPE, NOW, network_sets=sets).policy  # type: ignore[arg-type]


# --- helpers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        ([443], ["443"]),
        ([443, 80, 81, 82], ["80:82", "443"]),
        ([8080, 8080, 8081], ["8080:8081"]),
        ([PortRange(1000, 2000), 1500, 2001, 999], ["999:2001"]),
        ([PortRange(10, 20), PortRange(15, 30), 32], ["10:30", "32"]),
        (["https", 80, "http"], ["80", "http", "https"]),
        ([], []),
    ],
)
def test_ports_merge_into_sorted_ranges(ports, expected):
    assert [str(p) for p in merge_ports(ports)] == expected


@pytest.mark.parametrize(
    ("proto", "expected"),
    [("tcp", "TCP"), ("UDP", "UDP"), ("6", "TCP"), ("17", "UDP"), ("icmp", "ICMP"), ("58", "ICMPv6"), ("47", 47)],
)
def test_flow_protocols_become_rule_protocols(proto, expected):
    assert rule_protocol(proto) == expected


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"app": "web", "pod-template-hash": "abc12"}, {"app": "web"}),
        (
            {"app": "db", "controller-revision-hash": "db-7f", "statefulset.kubernetes.io/pod-name": "db-0"},
            {"app": "db"},
        ),
        ({"app": "x", "projectcalico.org/namespace": "ns", "projectcalico.org/serviceaccount": "sa"}, {"app": "x"}),
        ({"k8s-app": "kube-dns", "version": "v1"}, {"k8s-app": "kube-dns", "version": "v1"}),
        ({"pod-template-hash": "abc12"}, {}),
    ],
)
def test_stable_labels_drop_rollout_and_replica_labels(labels, expected):
    assert stable_labels(labels.items()) == expected


@pytest.mark.parametrize(
    ("name_aggr", "expected"),
    [
        ("backend-6cfbdd589f-*", "backend"),
        ("frontend-864f4fcdfd-*", "frontend"),
        ("node-exporter-*", "node-exporter"),
        ("my-app-*", "my-app"),
        ("db-0", "db-0"),
    ],
)
def test_workload_names_drop_the_replicaset_hash(name_aggr, expected):
    assert workload_base_name(name_aggr) == expected


@pytest.mark.parametrize(
    ("domain", "cluster"),
    [
        ("backend.storefront.svc.cluster.local", True),
        ("kubernetes.default.svc", True),
        ("logging", True),
        ("api.twilio.com", False),
        ("storage.googleapis.com.", False),
    ],
)
def test_cluster_names_are_recognised(domain, cluster):
    assert is_cluster_name(domain) is cluster


def test_selectors_quote_values_that_hold_a_quote():
    assert equality_selector({"b": "it's", "a": "x"}) == "a == 'x' && b == \"it's\""
    assert equality_selector({}) == "all()"


# --- the recommended policy ------------------------------------------------------------------------


def test_workload_policy_is_named_after_the_workload_and_learns():
    rec = recommend(storefront_flows(), BACKEND_SCOPE, NOW)
    policy = rec.policy
    assert (policy.name, policy.namespace, policy.tier) == ("recommended-backend", "storefront", "default")
    assert policy.staged_action is StagedAction.LEARN
    assert policy.spec.selector == "app == 'backend'"
    assert set(policy.spec.types) == {PolicyType.INGRESS, PolicyType.EGRESS}
    assert rec.outcome is Outcome.CREATED
    assert rec.status is RecommendationStatus.LEARNING


def test_namespace_scope_names_the_namespace_and_selects_all_of_it():
    policy = recommend(storefront_flows(), Scope("storefront"), NOW).policy
    assert policy.name == "namespace-isolation-storefront"
    assert policy.spec.selector == "all()"


def test_scope_tier_is_used():
    policy = recommend(storefront_flows(), Scope("storefront", tier="namespace-isolation"), NOW).policy
    assert policy.tier == "namespace-isolation"


def test_one_rule_per_peer_and_protocol_with_merged_ports():
    policy = recommend_backend()
    ledger = [r for r in policy.spec.egress if "ledger" in str(r.destination.selector)]
    assert len(ledger) == 1
    assert [str(p) for p in ledger[0].destination.ports] == ["7000:7001"]
    assert ledger[0].destination.namespace_selector == "projectcalico.org/name == 'payments'"
    assert ledger[0].destination.selector == "app == 'ledger'"


def test_peers_are_written_by_kind():
    policy = recommend_backend()
    egress = {r.metadata["ringfence.io/peer"]: r for r in policy.spec.egress}
    ingress = {r.metadata["ringfence.io/peer"]: r for r in policy.spec.ingress}
    logging = egress["workload storefront/logging-6cfbdd589f-*"]
    assert (logging.destination.selector, logging.destination.namespace_selector) == ("app == 'logging'", None)
    assert egress["private addresses"].destination.nets == ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
    assert egress["private addresses (IPv6)"].destination.nets == ("fc00::/7",)
    assert [str(p) for p in egress["private addresses"].destination.ports] == ["5432", "6379"]
    partners = egress["global network set partners"]
    assert (partners.destination.selector, partners.destination.namespace_selector) == ("role == 'partner'", "global()")
    sources = {r.source.selector for r in ingress.values()}
    assert "app == 'microservice1'" in sources
    assert "app == 'microservice2'" in sources
    reports = ingress["workload payments/reports-6cfbdd589f-*"]
    assert reports.source.selector == "app == 'reports' && tier == 'batch'"
    assert [str(p) for p in reports.destination.ports] == ["8443"]


def test_public_domains_become_domain_rules_without_cluster_names():
    ms2 = pod("microservice2")
    flows = [
        flow(ms2, net("pub"), 443, domains=("api.twilio.com", "twilio.storefront.svc.cluster.local")),
        flow(ms2, net("pub"), 443, domains=("api.twilio.com",)),
    ]
    policy = recommend(flows, Scope("storefront", "microservice2-6cfbdd589f-*"), NOW).policy
    domain_rules = [r for r in policy.spec.egress if r.destination.domains]
    assert [r.destination.domains for r in domain_rules] == [("api.twilio.com",)]
    assert [str(p) for p in domain_rules[0].destination.ports] == ["443"]


def test_kube_dns_egress_is_always_kept():
    # A workload seen only receiving traffic still gets DNS.
    flows = both_sides(pod("frontend"), pod("backend"), 8080)
    policy = recommend(flows, BACKEND_SCOPE, NOW).policy
    dns = [
        r for r in policy.spec.egress if r.destination.namespace_selector == "projectcalico.org/name == 'kube-system'"
    ]
    assert sorted((r.protocol, str(r.destination.ports[0])) for r in dns) == [("TCP", "53"), ("UDP", "53")]
    assert all(r.destination.selector == "k8s-app == 'kube-dns'" for r in dns)


def test_observed_dns_merges_into_the_kept_dns_rule():
    policy = recommend_backend()
    udp_dns = [
        r for r in policy.spec.egress if r.protocol == "UDP" and r.destination.selector == "k8s-app == 'kube-dns'"
    ]
    assert len(udp_dns) == 1
    assert udp_dns[0].metadata["ringfence.io/flows"] == "1"


def test_rules_record_their_provenance():
    ms1 = pod("microservice1")
    flows = [
        flow(ms1, pod("backend"), 8080, reporter=Reporter.DESTINATION, start=T0, num_flows=3),
        flow(ms1, pod("backend"), 8080, reporter=Reporter.DESTINATION, start=T0 + 600, num_flows=4),
    ]
    policy = recommend(flows, BACKEND_SCOPE, NOW).policy
    (rule,) = policy.spec.ingress
    assert rule.metadata["ringfence.io/flows"] == "7"
    assert rule.metadata["ringfence.io/bytes"] == "300"
    assert rule.metadata["ringfence.io/first-seen"] == "2024-05-01T11:00:00Z"
    assert rule.metadata["ringfence.io/last-seen"] == "2024-05-01T11:15:00Z"


@pytest.mark.parametrize(
    ("ips", "nets"),
    [
        (["10.1.2.3", "192.168.0.9"], [("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]),
        (["fd00::1"], [("fc00::/7",)]),
        (["10.1.2.3", None], [("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"), ("fc00::/7",)]),
    ],
)
def test_private_addresses_get_one_rule_per_ip_family(ips, nets):
    flows = [flow(pod("backend"), net("pvt", ip), 5432) for ip in ips]
    policy = recommend(flows, BACKEND_SCOPE, NOW).policy
    assert [r.destination.nets for r in policy.spec.egress if r.destination.nets] == nets


def test_other_public_traffic_is_allowed_by_protocol_and_port():
    # payments is not a twilio namespace: the platform tier lets its public traffic through.
    ledger = pod("ledger", "payments")
    flows = [flow(ledger, net("pub"), 123, proto="udp"), flow(ledger, net("pub", "8.8.8.8"), 124, proto="udp")]
    scope = Scope("payments", "ledger-6cfbdd589f-*")
    policy = recommend(flows, scope, NOW).policy
    (public,) = [r for r in policy.spec.egress if r.metadata["ringfence.io/peer"] == "public addresses"]
    assert (public.protocol, [str(p) for p in public.destination.ports]) == ("UDP", ["123:124"])
    assert not public.destination.nets
    assert public.destination.selector is None
    engine = engine_with(policy)
    assert [engine.evaluate(f).staged_action for f in flows] == ["allow", "allow"]
    assert engine.evaluate(flow(ledger, net("pub"), 125, proto="udp")).staged_action == "deny"


def test_known_private_addresses_are_allowed_for_certain():
    flows = [flow(pod("backend"), net("pvt", "10.1.2.3"), 5432)]
    engine = engine_with(recommend(flows, BACKEND_SCOPE, NOW).policy)
    assert engine.evaluate(flows[0]).staged_action == "allow"
    assert engine.evaluate(flow(pod("backend"), net("pub", "8.8.8.8"), 5432)).staged_action == "deny"


def test_no_flows_means_no_recommendation():
    with pytest.raises(RecommendationError, match="no allowed flows"):
        recommend([flow(pod("backend"), net("pub"), 22, action=FlowAction.DENY)], BACKEND_SCOPE, NOW)


def test_a_workload_without_stable_labels_cannot_be_selected():
    bare = Endpoint(EndpointType.WORKLOAD, "job-*", "storefront", labels=label_pairs({"pod-template-hash": "x1y2z"}))
    with pytest.raises(RecommendationError, match="stable labels"):
        recommend([flow(bare, net("pub"), 443)], Scope("storefront", "job-*"), NOW)


# --- correctness through the engine ----------------------------------------------------------------


@pytest.mark.parametrize(
    "scope", [BACKEND_SCOPE, Scope("storefront", "microservice2-6cfbdd589f-*"), Scope("storefront")]
)
def test_staged_verdict_allows_every_allowed_flow_of_the_scope(scope):
    flows = storefront_flows()
    sets = [r for r in load_manifests(STOREFRONT) if r.kind == "GlobalNetworkSet"]
    engine = engine_with(recommend(flows, scope, NOW, network_sets=sets).policy)
    in_scope = [f for f in flows if scope.direction(f) is not None]
    assert in_scope
    for item in in_scope:
        staged = engine.evaluate(item).staged_action
        if _private_without_address(item):
            # Calico's "pvt" spans RFC 1918 and IPv6 ULA, which no single rule may mix: the record
            # cannot tell which rule matches, so the engine may only say uncertain, never deny.
            assert staged in ("allow", "uncertain"), item
        else:
            assert staged == "allow", item


def _private_without_address(item: Flow) -> bool:
    return any(side.name_aggr == "pvt" and side.ip is None for side in (item.source, item.dest))


@pytest.mark.parametrize(
    "unseen",
    [
        flow(pod("backend"), pod("frontend"), 8080),  # same namespace, never contacted
        flow(pod("backend"), pod("logging"), 9300),  # known peer, other port
        flow(pod("backend"), pod("logging"), 9200, proto="udp"),  # known peer, other protocol
        flow(pod("backend"), pod("ledger", "other"), 7000),  # same labels, other namespace
        flow(pod("backend"), pod("billing", "payments"), 7000),  # known namespace, other workload
        flow(pod("frontend"), pod("backend"), 8080, reporter=Reporter.DESTINATION),  # new client
        flow(pod("backend"), net("pub"), 443, domains=("evil.example.com",)),
        flow(pod("backend"), net("pub"), 22),  # was denied: not learned
    ],
)
def test_staged_verdict_denies_a_peer_never_seen(unseen):
    engine = engine_with(recommend_backend())
    assert engine.evaluate(unseen).staged_action == "deny"


def test_recommendation_does_not_change_the_enforced_verdicts():
    flows = storefront_flows()
    before = PolicyEngine(load_manifests(STOREFRONT))
    after = engine_with(recommend_backend(flows))
    assert [v.action for v in before.evaluate_many(flows)] == [v.action for v in after.evaluate_many(flows)]


# --- refinement ------------------------------------------------------------------------------------


def test_rerun_refines_in_place_and_stabilizes():
    flows = storefront_flows()
    first = recommend(flows, BACKEND_SCOPE, NOW)
    later = NOW + timedelta(minutes=5)
    same = recommend(flows, BACKEND_SCOPE, later, first.policy)
    assert same.outcome is Outcome.UNCHANGED
    assert same.status is RecommendationStatus.LEARNING
    # The same window again counts nothing twice.
    assert [r.metadata for r in same.policy.spec.egress] == [r.metadata for r in first.policy.spec.egress]

    stabilizing = recommend(flows, BACKEND_SCOPE, NOW + timedelta(minutes=12), same.policy)
    assert stabilizing.status is RecommendationStatus.STABILIZING
    stable = recommend(flows, BACKEND_SCOPE, NOW + timedelta(minutes=25), stabilizing.policy)
    assert stable.status is RecommendationStatus.STABLE

    new_traffic = [flow(pod("backend"), pod("logging"), 9201, start=T0 + 3600)]
    refined = recommend(new_traffic, BACKEND_SCOPE, NOW + timedelta(minutes=30), stable.policy)
    assert refined.outcome is Outcome.UPDATED
    assert refined.status is RecommendationStatus.LEARNING
    assert refined.policy.name == first.policy.name
    logging = next(r for r in refined.policy.spec.egress if r.destination.selector == "app == 'logging'")
    assert [str(p) for p in logging.destination.ports] == ["9200:9201"]
    assert logging.metadata["ringfence.io/flows"] == "2"
    # Rules learned earlier are kept although the new window did not see them.
    assert len(refined.policy.spec.egress) == len(first.policy.spec.egress)
    assert len(refined.policy.spec.ingress) == len(first.policy.spec.ingress)


@pytest.mark.parametrize(
    ("staged_action", "enforced", "outcome"),
    [
        (StagedAction.SET, False, Outcome.FROZEN),
        (StagedAction.DELETE, False, Outcome.FROZEN),
        (StagedAction.IGNORE, False, Outcome.IGNORED),
        (StagedAction.LEARN, True, Outcome.FROZEN),
    ],
)
def test_policies_the_user_took_over_are_never_rewritten(staged_action, enforced, outcome):
    learned = recommend(storefront_flows(), BACKEND_SCOPE, NOW).policy
    taken = dataclasses.replace(learned, staged_action=staged_action)
    new_traffic = [flow(pod("backend"), pod("logging"), 9999)]
    rec = recommend(new_traffic, BACKEND_SCOPE, NOW + timedelta(hours=1), taken, enforced=enforced)
    assert rec.outcome is outcome
    assert rec.policy is taken
    assert not rec.written
