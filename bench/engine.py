"""Benchmark the policy engine's batch API against a naive evaluation loop.

    .venv/bin/python bench/engine.py [--flows N] [--sample N] [--seed S]

Generates a cluster (200 namespaces, 2,000 workloads, 500 enforced policies in 4 tiers plus staged
ones, network sets, domains, Kubernetes policies) and N flow records (default 1,000,000) drawn with Zipf-like repetition
from about 20,000 distinct connections, as aggregated flow logs repeat them. Records share endpoint
objects, as the flow-log parser's endpoint cache makes them do. Prints flows/s of
``PolicyEngine.evaluate_many`` over all records (one core), then of a naive loop (selectors parsed
once; every policy of every tier tried for every record; no index, no cache) on a sample, the ratio,
and whether both agree on every sampled verdict. Rates are per CPU second of this process (one core),
so other load on the machine does not distort them; the wall-clock time is printed too.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import time
from collections import Counter
from collections.abc import Mapping

from ringfence.engine import PolicyEngine
from ringfence.engine.facts import protocol_number
from ringfence.engine.identity import NAMESPACE_LABEL, NAMESPACE_PREFIX, ORCHESTRATOR_LABEL
from ringfence.engine.k8s import convert_spec
from ringfence.engine.policies import CompiledPolicy
from ringfence.engine.selectors import entity_rule_selectors, global_policy_selector, namespaced_policy_selector
from ringfence.flows.record import Endpoint, EndpointType, Flow, FlowAction, Reporter
from ringfence.model import (
    Action,
    EntityRule,
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    K8sPeer,
    K8sPolicySpec,
    K8sPort,
    K8sRule,
    KubernetesNetworkPolicy,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    ObjectMeta,
    PolicySpec,
    PolicyType,
    PortRange,
    Resource,
    Rule,
    StagedNetworkPolicy,
    Tier,
    resource_key,
)
from ringfence.selector import Selector

NAMESPACES = 200
APPS_PER_NAMESPACE = 10
PORTS = (8080, 8443, 5432, 6379, 9090)
DOMAINS = ("api.twilio.com", "hooks.slack.com", "s3.amazonaws.com", "api.stripe.com", "example.org")


def _meta(name: str, namespace: str | None = None, labels: Mapping[str, str] | None = None) -> ObjectMeta:
    return ObjectMeta(name, namespace, dict(labels or {}))


def build_cluster(rng: random.Random) -> list[Resource]:
    """Tiers security/platform/application/default, 500 enforced policies, 50 staged, 20 network sets."""
    resources: list[Resource] = [
        Tier(_meta("security"), 100.0, Action.PASS),
        Tier(_meta("platform"), 200.0, Action.PASS),
        Tier(_meta("application"), 300.0, Action.PASS),
    ]
    for n in range(NAMESPACES):
        labels = {"team": f"team-{n % 20}", "env": "prod" if n % 3 else "dev"}
        if n % 4 == 0:
            labels["twilio"] = "allowed"
        resources.append(Namespace(_meta(f"ns-{n:03d}", labels=labels)))
    resources.extend(
        GlobalNetworkSet(
            _meta(f"partners-{s}", labels={"type": "partner" if s % 2 else "public", "zone": f"z{s % 5}"}),
            nets=(f"{20 + s}.0.0.0/8",),
            allowed_egress_domains=("*.twilio.com",) if s == 0 else (),
        )
        for s in range(20)
    )
    for i in range(25):  # security: deny known-bad ranges, pass the rest
        egress = (Rule(Action.DENY, destination=EntityRule(nets=(f"{100 + i}.0.0.0/8",))),)
        ingress = (Rule(Action.DENY, protocol="TCP", destination=EntityRule(ports=(PortRange(22, 22),))),)
        spec = PolicySpec(
            tier="security",
            order=float(i),
            selector="all()" if i % 2 else f"env == '{('prod', 'dev')[i % 2]}'",
            types=(PolicyType.INGRESS, PolicyType.EGRESS),
            ingress=ingress,
            egress=egress,
        )
        resources.append(GlobalNetworkPolicy(_meta(f"security.guard-{i}"), spec))
    for i in range(50):  # platform: per team, domains and network sets
        egress = (
            Rule(
                Action.ALLOW,
                protocol="TCP",
                destination=EntityRule(domains=("*.twilio.com",), ports=(PortRange(443, 443),)),
            ),
            Rule(Action.DENY, destination=EntityRule(selector=f"type == 'public' && zone == 'z{i % 5}'")),
            Rule(Action.PASS, destination=EntityRule(namespace_selector=f"team == 'team-{i % 20}'")),
        )
        spec = PolicySpec(
            tier="platform",
            order=float(i),
            selector="all()",
            namespace_selector=f"team == 'team-{i % 20}'" if i < 40 else "twilio == 'allowed'",
            types=(PolicyType.EGRESS,),
            egress=egress,
        )
        resources.append(GlobalNetworkPolicy(_meta(f"platform.egress-{i}"), spec))
    for n in range(NAMESPACES):  # application: one policy per namespace; default: one more, plus staged
        namespace = f"ns-{n:03d}"
        app = f"app-{rng.randrange(APPS_PER_NAMESPACE)}"
        peer = f"app-{rng.randrange(APPS_PER_NAMESPACE)}"
        ingress = (
            Rule(
                Action.ALLOW,
                protocol="TCP",
                source=EntityRule(selector=f"app == '{peer}'"),
                destination=EntityRule(ports=(PortRange(8080, 8443),)),
            ),
            Rule(Action.DENY, protocol="TCP", source=EntityRule(namespace_selector=f"team == 'team-{(n + 1) % 20}'")),
        )
        spec = PolicySpec(tier="application", order=float(n % 7), selector=f"app == '{app}'", ingress=ingress)
        resources.append(NetworkPolicy(_meta(f"application.{app}", namespace), spec))
        egress = (
            Rule(
                Action.ALLOW,
                protocol="UDP",
                destination=EntityRule(
                    namespace_selector="projectcalico.org/name == 'kube-system'", ports=(PortRange(53, 53),)
                ),
            ),
            Rule(
                Action.ALLOW,
                protocol="TCP",
                destination=EntityRule(selector="has(app)", ports=(PortRange(5432, 5432),)),
            ),
            Rule(Action.ALLOW, destination=EntityRule(selector="all()")),
        )
        default = PolicySpec(
            selector=f"app in {{'app-{n % 10}', 'app-{(n + 3) % 10}'}}",
            types=(PolicyType.INGRESS, PolicyType.EGRESS),
            ingress=(Rule(Action.ALLOW, source=EntityRule(selector="all()")),),
            egress=egress,
        )
        resources.append(NetworkPolicy(_meta(f"default.workload-{n}", namespace), default))
        if n % 4 == 0:
            staged = PolicySpec(selector=default.selector, types=default.types, ingress=(), egress=egress[:1])
            resources.append(StagedNetworkPolicy(_meta(f"default.workload-{n}", namespace), staged))
        if n % 8 == 0:  # Kubernetes policies: same-namespace clients and the team's namespaces
            peers = (
                K8sPeer(pod_selector=LabelSelector({"env": "prod"})),
                K8sPeer(namespace_selector=LabelSelector({"team": f"team-{n % 20}"})),
            )
            k8s_spec = K8sPolicySpec(
                pod_selector=LabelSelector({"app": f"app-{(n + 5) % 10}"}),
                policy_types=(PolicyType.INGRESS,),
                ingress=(K8sRule(ports=(K8sPort("TCP", 8080), K8sPort("TCP", 8443)), peers=peers),),
            )
            resources.append(KubernetesNetworkPolicy(_meta(f"allow-clients-{n}", namespace), k8s_spec))
    return resources


def build_flows(rng: random.Random, count: int) -> list[Flow]:
    """``count`` records drawn with Zipf-like weights from the connections of every workload."""
    workloads = []
    for n in range(NAMESPACES):
        for a in range(APPS_PER_NAMESPACE):
            labels = (("app", f"app-{a}"), ("env", "prod" if n % 3 else "dev"), ("version", f"v{a % 3}"))
            workloads.append(Endpoint(EndpointType.WORKLOAD, f"app-{a}-5d8f-*", f"ns-{n:03d}", labels=labels))
    dns = Endpoint(EndpointType.WORKLOAD, "coredns-76f7-*", "kube-system", labels=(("k8s-app", "kube-dns"),))
    externals = [
        Endpoint(EndpointType.NETWORK, "pub", ip=str(ipaddress.IPv4Address(rng.randrange(0x14000000, 0x80000000))))
        for _ in range(400)
    ]
    templates: list[tuple[Endpoint, Endpoint, str, int, tuple[str, ...]]] = []
    for index, source in enumerate(workloads):
        namespace_base = index - index % APPS_PER_NAMESPACE
        for _ in range(2):
            peer = workloads[namespace_base + rng.randrange(APPS_PER_NAMESPACE)]
            templates.append((source, peer, "tcp", rng.choice(PORTS), ()))
        templates.append((source, rng.choice(workloads), "tcp", 5432, ()))
        templates.append((source, dns, "udp", 53, ()))
        external = rng.choice(externals)
        domains = (rng.choice(DOMAINS),) if rng.random() < 0.5 else ()
        templates.append((source, external, "tcp", 443, domains))
    ports: dict[tuple[Endpoint, int], Endpoint] = {}

    def with_port(endpoint: Endpoint, port: int) -> Endpoint:
        found = ports.get((endpoint, port))
        if found is None:
            found = Endpoint(
                endpoint.type, endpoint.name_aggr, endpoint.namespace, None, endpoint.labels, endpoint.ip, port
            )
            ports[(endpoint, port)] = found
        return found

    records: list[tuple[Endpoint, Endpoint, str, Reporter, tuple[str, ...]]] = []
    for source, dest, proto, port, domains in templates:
        target = with_port(dest, port)
        records.append((source, target, proto, Reporter.SOURCE, domains))
        if dest.type is EndpointType.WORKLOAD:
            records.append((source, target, proto, Reporter.DESTINATION, domains))
    rng.shuffle(records)
    weights = [1.0 / (rank + 10) for rank in range(len(records))]
    chosen = rng.choices(records, weights=weights, k=count)
    return [
        Flow(t, t + 300, source, dest, proto, reporter, FlowAction.ALLOW, dest_domains=domains, bytes_in=t % 9000)
        for t, (source, dest, proto, reporter, domains) in enumerate(chosen)
    ]


NaiveRule = tuple[Rule, Selector | None, bool]


class NaiveEvaluator:
    """Every policy of every tier, every record: selectors parsed once, nothing indexed or cached.

    Implements only what ``build_cluster`` uses (protocols, port ranges, nets, selectors with
    namespace scoping, namespace selectors, network sets by IP, domains) on fully known records.
    """

    def __init__(self, resources: list[Resource], engine: PolicyEngine) -> None:
        self.namespaces = {r.name: dict(r.metadata.labels) for r in resources if isinstance(r, Namespace)}
        self.sets = [
            (r, [ipaddress.ip_network(n) for n in r.nets], dict(r.metadata.labels))
            for r in resources
            if isinstance(r, GlobalNetworkSet)
        ]
        by_key = {policy.key: policy for policy in engine.policies}
        self.tiers = [(tier.name, tier.default_action) for tier in engine.tiers]
        self.policies: list[tuple[CompiledPolicy, Selector, list[NaiveRule], list[NaiveRule]]] = []
        for resource in resources:
            if isinstance(resource, KubernetesNetworkPolicy):
                spec = convert_spec(resource.spec)
            elif isinstance(resource, NetworkPolicy | GlobalNetworkPolicy):
                spec = resource.spec
            else:
                continue
            compiled, namespace = by_key[resource_key(resource)], resource.metadata.namespace
            if namespace is not None:
                node = namespaced_policy_selector(spec.selector, "", namespace)
            else:
                node = global_policy_selector(spec.selector, spec.namespace_selector, "")
            ingress = [(rule, *self._rule_selector(rule, namespace)) for rule in spec.ingress]
            egress = [(rule, *self._rule_selector(rule, namespace)) for rule in spec.egress]
            self.policies.append((compiled, Selector(node), ingress, egress))
        self.policies.sort(key=lambda item: item[0].sort_key)

    @staticmethod
    def _rule_selector(rule: Rule, namespace: str | None) -> tuple[Selector | None, bool]:
        entity = (
            rule.source
            if rule.destination.is_empty() or rule.source.selector or rule.source.namespace_selector
            else rule.destination
        )
        positive, _ = entity_rule_selectors(entity, namespace)
        return (None if positive is None else Selector(positive)), entity is rule.source

    def _labels(self, endpoint: Endpoint) -> list[dict[str, str]]:
        found = []
        if endpoint.type is EndpointType.WORKLOAD:
            labels = {NAMESPACE_PREFIX + k: v for k, v in self.namespaces.get(endpoint.namespace or "", {}).items()}
            labels[NAMESPACE_PREFIX + "projectcalico.org/name"] = endpoint.namespace or ""
            labels[NAMESPACE_PREFIX + "kubernetes.io/metadata.name"] = endpoint.namespace or ""
            labels.update(endpoint.labels)
            labels[ORCHESTRATOR_LABEL] = "k8s"
            labels[NAMESPACE_LABEL] = endpoint.namespace or ""
            found.append(labels)
        if endpoint.ip:
            address = ipaddress.ip_address(endpoint.ip)
            found.extend(labels for _, nets, labels in self.sets if any(address in net for net in nets))
        return found

    def evaluate(self, flow: Flow) -> str:
        egress = flow.reporter is Reporter.SOURCE
        subject = flow.source if egress else flow.dest
        subject_labels = self._labels(subject)[0]
        peers = {id(flow.source): self._labels(flow.source), id(flow.dest): self._labels(flow.dest)}
        proto = protocol_number(flow.proto)
        for tier, default_action in self.tiers:
            selected = False
            for policy, selector, ingress, egress_rules in self.policies:
                if policy.tier != tier or not (policy.applies_egress if egress else policy.applies_ingress):
                    continue
                if not selector.matches(subject_labels):
                    continue
                selected = True
                for rule, rule_selector, on_source in egress_rules if egress else ingress:
                    if self._matches(rule, rule_selector, on_source, flow, proto, peers):
                        if rule.action is Action.PASS:
                            break
                        if rule.action in (Action.ALLOW, Action.DENY):
                            return rule.action.value.lower()
                else:
                    continue
                break  # a Pass rule: next tier
            else:
                if selected and default_action == "deny":
                    return "deny"
        return "allow" if subject.type is EndpointType.WORKLOAD else "deny"

    @staticmethod
    def _matches(  # noqa: PLR0917 - a benchmark helper
        rule: Rule,
        selector: Selector | None,
        on_source: bool,
        flow: Flow,
        proto: int | None,
        peers: dict[int, list[dict[str, str]]],
    ) -> bool:
        if rule.protocol is not None and protocol_number(rule.protocol) != proto:
            return False
        destination = rule.destination
        if destination.ports and not any(
            p.first <= (flow.dest.port or -1) <= p.last for p in destination.ports if isinstance(p, PortRange)
        ):
            return False
        if destination.nets and (
            flow.dest.ip is None
            or not any(ipaddress.ip_address(flow.dest.ip) in ipaddress.ip_network(n) for n in destination.nets)
        ):
            return False
        if destination.domains and (
            flow.dest.type is EndpointType.WORKLOAD or not any(d.endswith(".twilio.com") for d in flow.dest_domains)
        ):
            return False
        if selector is not None:
            side = flow.source if on_source else flow.dest
            if not any(selector.matches(labels) for labels in peers[id(side)]):
                return False
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=1_000_000, help="flow records to evaluate (default 1,000,000)")
    parser.add_argument("--sample", type=int, default=20_000, help="records the naive loop evaluates (default 20,000)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    resources = build_cluster(rng)
    flows = build_flows(rng, args.flows)
    started = time.perf_counter()
    engine = PolicyEngine(resources)
    compiled = time.perf_counter() - started
    wall, started = time.perf_counter(), time.process_time()
    verdicts = engine.evaluate_many(flows)
    elapsed, wall = time.process_time() - started, time.perf_counter() - wall
    policies = sum(1 for p in engine.policies if not p.staged)
    staged = len(engine.policies) - policies
    print(
        f"cluster: {NAMESPACES} namespaces, {NAMESPACES * APPS_PER_NAMESPACE} workloads, {policies} policies "
        f"(+{staged} staged) in {len(engine.tiers)} tiers; compiled in {compiled * 1000:.0f} ms"
    )
    counts = Counter(v.action for v in verdicts)
    print(
        f"engine: {len(flows):,} records in {elapsed:.2f} s CPU ({wall:.2f} s wall) = "
        f"{len(flows) / elapsed:,.0f} records/s "
        f"({len({id(v) for v in verdicts}):,} distinct verdicts; allow {counts['allow']:,}, "
        f"deny {counts['deny']:,}, uncertain {counts['uncertain']:,})"
    )
    sample = rng.sample(flows, min(args.sample, len(flows)))
    naive = NaiveEvaluator(resources, engine)
    started = time.process_time()
    naive_actions = [naive.evaluate(flow) for flow in sample]
    naive_elapsed = time.process_time() - started
    naive_rate = len(sample) / naive_elapsed
    fresh = PolicyEngine(resources).evaluate_many(sample)
    disagreements = sum(a != v.action for a, v in zip(naive_actions, fresh, strict=True))
    print(f"naive: {len(sample):,} records in {naive_elapsed:.2f} s CPU = {naive_rate:,.0f} records/s")
    speed_up = len(flows) / elapsed / naive_rate
    print(f"speed-up: {speed_up:.1f}x; naive and engine disagree on {disagreements} of {len(sample):,} verdicts")


if __name__ == "__main__":
    main()
