"""Property: any valid resource dumps to text (YAML or JSON) that loads back equal."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.manifests import dump_manifests, load_manifests, resource_from_dict, resource_to_dict
from ringfence.model import (
    Action,
    EntityRule,
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    HTTPMatch,
    HTTPPath,
    ICMPFields,
    IPBlock,
    K8sPeer,
    K8sPolicySpec,
    K8sPort,
    K8sRule,
    KubernetesNetworkPolicy,
    LabelSelector,
    LabelSelectorRequirement,
    Namespace,
    NetworkPolicy,
    NetworkSet,
    ObjectMeta,
    PolicySpec,
    PolicyType,
    PortRange,
    Resource,
    Rule,
    ServiceAccountMatch,
    StagedAction,
    StagedGlobalNetworkPolicy,
    StagedKubernetesNetworkPolicy,
    StagedNetworkPolicy,
    Tier,
    default_policy_types,
    resource_key,
)

labels_names = st.from_regex(r"[a-z][a-z0-9]{0,5}(-[a-z0-9]{1,4})?", fullmatch=True)
label_keys = st.one_of(labels_names, st.builds(lambda prefix, name: f"{prefix}.io/{name}", labels_names, labels_names))
label_values = st.one_of(st.just(""), st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,6}[A-Za-z0-9])?", fullmatch=True))
# Text that YAML would turn into something else when left unquoted must survive as text.
tricky_text = st.one_of(
    st.sampled_from(["yes", "on", "No", "null", "~", "20:30", "0x1F", "0755", "1e3", "2024-05-01", "*a", "- x", ""]),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12),
    st.text(alphabet="ab:#'\"\n {}[],&*!|>%@`", max_size=12),
)
label_maps = st.dictionaries(label_keys, label_values, max_size=3)
annotation_maps = st.dictionaries(label_keys, tricky_text, max_size=3)
selectors = st.sampled_from(
    ["app == 'web'", 'tier in {"a", "b"}', "has(role) && !has(canary)", "all()", "a starts with 'x' || b != 'y'"]
)
maybe_selectors = st.none() | selectors
orders = st.none() | st.floats(allow_nan=False, allow_infinity=False, width=64) | st.integers(-(10**6), 10**6)
nets_v4 = st.sampled_from(["10.0.0.0/8", "192.168.1.7/24", "0.0.0.0/0", "203.0.113.9"])
nets_v6 = st.sampled_from(["fd00::/8", "2001:db8::1", "::/0"])
port_names = st.sampled_from(["http", "grpc-web", "dns", "metrics9"])
ports = st.one_of(
    port_names,
    st.integers(1, 65535).map(lambda port: PortRange(port, port)),
    st.tuples(st.integers(1, 65535), st.integers(0, 1000)).map(lambda t: PortRange(t[0], min(65535, t[0] + t[1]))),
)
PORT_PROTOCOLS: list[str | int] = ["TCP", "UDP", "SCTP", 6, 17, 132]
OTHER_PROTOCOLS: list[str | int] = ["UDP", "UDPLite", 47, 255]
domains = st.sampled_from(["api.twilio.com", "*.twilio.com", "www.*.io", "example.org", "a_b.example.com"])


def _float(order: float | None) -> float | None:
    return None if order is None else float(order)


@st.composite
def metadata(draw: st.DrawFn, *, namespaced: bool, name: st.SearchStrategy[str] = labels_names) -> ObjectMeta:
    return ObjectMeta(
        name=draw(name),
        namespace=draw(labels_names) if namespaced else None,
        labels=draw(label_maps),
        annotations=draw(annotation_maps),
        resource_version=draw(st.none() | st.from_regex(r"[0-9]{1,6}", fullmatch=True)),
        uid=draw(st.none() | tricky_text.filter(bool)),
        creation_timestamp=draw(st.none() | st.just("2024-05-01T10:00:00Z")),
    )


@st.composite
def entity_rules(draw: st.DrawFn, *, version: int, with_ports: bool, with_domains: bool) -> EntityRule:
    nets = nets_v4 if version == 4 else nets_v6
    accounts = st.builds(
        ServiceAccountMatch, names=st.lists(labels_names, max_size=2).map(tuple), selector=st.just("") | selectors
    )
    return EntityRule(
        nets=tuple(draw(st.lists(nets, max_size=2))),
        not_nets=tuple(draw(st.lists(nets, max_size=1))),
        selector=draw(maybe_selectors),
        not_selector=draw(maybe_selectors),
        namespace_selector=draw(st.none() | selectors | st.just("global()")),
        ports=tuple(draw(st.lists(ports, max_size=3))) if with_ports else (),
        not_ports=tuple(draw(st.lists(ports, max_size=2))) if with_ports else (),
        domains=tuple(draw(st.lists(domains, max_size=2))) if with_domains else (),
        service_accounts=draw(st.none() | accounts),
    )


@st.composite
def rules(draw: st.DrawFn, direction: PolicyType) -> Rule:
    action = draw(st.sampled_from(Action))
    version = draw(st.sampled_from([4, 6]))
    shape = draw(st.sampled_from(["ports", "icmp", "other"]))
    icmp = None
    if shape == "ports":
        protocol: str | int | None = draw(st.sampled_from(PORT_PROTOCOLS))
    elif shape == "icmp":
        protocol = "ICMP" if version == 4 else "ICMPv6"
        icmp_fields = st.builds(ICMPFields, type=st.integers(0, 254), code=st.none() | st.integers(0, 255))
        icmp = draw(st.none() | st.just(ICMPFields()) | icmp_fields)
    else:
        protocol = draw(st.none() | st.sampled_from(OTHER_PROTOCOLS))
    http = None
    if direction is PolicyType.INGRESS and action is Action.ALLOW and protocol in {None, "TCP"}:
        paths = st.lists(st.one_of(st.builds(HTTPPath, exact=st.just("/a")), st.builds(HTTPPath, prefix=st.just("/"))))
        http = draw(st.none() | st.builds(HTTPMatch, methods=st.just(("GET",)), paths=paths.map(tuple)))
    dns = direction is PolicyType.EGRESS and action is Action.ALLOW
    return Rule(
        action=action,
        protocol=protocol,
        not_protocol=draw(st.none() | st.sampled_from(OTHER_PROTOCOLS)),
        icmp=icmp,
        not_icmp=draw(st.none() | st.builds(ICMPFields, type=st.integers(0, 254))),
        ip_version=draw(st.none() | st.just(version)),
        source=draw(entity_rules(version=version, with_ports=shape == "ports", with_domains=False)),
        destination=draw(entity_rules(version=version, with_ports=shape == "ports", with_domains=dns)),
        http=http,
        metadata=draw(annotation_maps),
    )


@st.composite
def policy_specs(draw: st.DrawFn, *, tier: str, is_global: bool) -> PolicySpec:
    ingress = tuple(draw(st.lists(rules(PolicyType.INGRESS), max_size=2)))
    egress = tuple(draw(st.lists(rules(PolicyType.EGRESS), max_size=2)))
    written = draw(st.none() | st.permutations(list(PolicyType)).flatmap(lambda t: st.sampled_from([t[:1], t])))
    flags = draw(st.sampled_from([(False, False), (False, True), (True, True)])) if is_global else (False, False)
    return PolicySpec(
        tier=tier,
        order=_float(draw(orders)),
        selector=draw(st.just("") | selectors),
        service_account_selector=draw(st.just("") | selectors),
        namespace_selector=draw(maybe_selectors) if is_global else None,
        types=tuple(written) if written else default_policy_types(ingress, egress),
        types_given=written is not None,
        ingress=ingress,
        egress=egress,
        do_not_track=flags[0],
        apply_on_forward=flags[1],
    )


@st.composite
def calico_policies(draw: st.DrawFn) -> Resource:
    kind = draw(st.sampled_from(["np", "gnp", "snp", "sgnp"]))
    tier = draw(st.just("default") | labels_names)
    legacy = draw(st.booleans())
    name = st.builds(lambda base: f"{tier}.{base}" if legacy else base, labels_names)
    meta = draw(metadata(namespaced=kind in {"np", "snp"}, name=name))
    is_global = kind in {"gnp", "sgnp"}
    staged_action = draw(st.sampled_from(StagedAction))
    spec = PolicySpec(tier=tier)
    if kind in {"np", "gnp"} or staged_action is not StagedAction.DELETE:
        spec = draw(policy_specs(tier=tier, is_global=is_global))
    if kind == "np":
        return NetworkPolicy(metadata=meta, spec=spec)
    if kind == "gnp":
        return GlobalNetworkPolicy(metadata=meta, spec=spec)
    if kind == "snp":
        return StagedNetworkPolicy(metadata=meta, spec=spec, staged_action=staged_action)
    return StagedGlobalNetworkPolicy(metadata=meta, spec=spec, staged_action=staged_action)


requirements = st.one_of(
    st.builds(
        LabelSelectorRequirement,
        key=label_keys,
        operator=st.sampled_from(["In", "NotIn"]),
        values=st.lists(label_values, min_size=1, max_size=2).map(tuple),
    ),
    st.builds(LabelSelectorRequirement, key=label_keys, operator=st.sampled_from(["Exists", "DoesNotExist"])),
)
label_selectors = st.builds(
    LabelSelector, match_labels=label_maps, match_expressions=st.lists(requirements, max_size=2).map(tuple)
)
ip_blocks = st.sampled_from(
    [IPBlock("10.0.0.0/8"), IPBlock("10.0.0.0/8", ("10.1.0.0/16", "10.2.3.0/24")), IPBlock("fd00::/8", ("fd00::/16",))]
)
k8s_peers = st.one_of(
    st.builds(K8sPeer, ip_block=ip_blocks),
    st.builds(K8sPeer, pod_selector=label_selectors, namespace_selector=st.none() | label_selectors),
    st.builds(K8sPeer, namespace_selector=label_selectors),
)
k8s_ports = st.one_of(
    st.builds(K8sPort, protocol=st.sampled_from(["TCP", "UDP", "SCTP"]), port=st.none() | port_names),
    st.integers(1, 65000).flatmap(
        lambda port: st.builds(K8sPort, port=st.just(port), end_port=st.none() | st.integers(port, 65535))
    ),
)
k8s_rules = st.builds(
    K8sRule, ports=st.lists(k8s_ports, max_size=2).map(tuple), peers=st.lists(k8s_peers, max_size=2).map(tuple)
)
k8s_specs = st.builds(
    K8sPolicySpec,
    pod_selector=label_selectors,
    policy_types=st.sampled_from([(), (PolicyType.INGRESS,), (PolicyType.EGRESS, PolicyType.INGRESS)]),
    ingress=st.lists(k8s_rules, max_size=2).map(tuple),
    egress=st.lists(k8s_rules, max_size=2).map(tuple),
)


@st.composite
def k8s_policies(draw: st.DrawFn) -> Resource:
    meta = draw(metadata(namespaced=True))
    if draw(st.booleans()):
        return KubernetesNetworkPolicy(metadata=meta, spec=draw(k8s_specs))
    action = draw(st.sampled_from(StagedAction))
    spec = K8sPolicySpec() if action is StagedAction.DELETE else draw(k8s_specs)
    return StagedKubernetesNetworkPolicy(metadata=meta, spec=spec, staged_action=action)


@st.composite
def other_resources(draw: st.DrawFn) -> Resource:
    kind = draw(st.sampled_from(["tier", "set", "global-set", "namespace"]))
    meta = draw(metadata(namespaced=kind == "set"))
    nets = tuple(draw(st.lists(nets_v4 | nets_v6, max_size=3)))
    allowed = tuple(draw(st.lists(domains, max_size=2)))
    if kind == "tier":
        action = draw(st.sampled_from([Action.DENY, Action.PASS]))
        return Tier(metadata=meta, order=_float(draw(orders)), default_action=action)
    if kind == "namespace":
        return Namespace(metadata=meta)
    if kind == "set":
        return NetworkSet(metadata=meta, nets=nets, allowed_egress_domains=allowed)
    return GlobalNetworkSet(metadata=meta, nets=nets, allowed_egress_domains=allowed)


resources = st.one_of(calico_policies(), k8s_policies(), other_resources())


@settings(max_examples=250, deadline=None)
@given(resources)
def test_dump_then_load_gives_back_the_resource(resource: Resource) -> None:
    assert load_manifests(dump_manifests([resource])) == [resource]


@settings(max_examples=150, deadline=None)
@given(st.lists(resources, max_size=4, unique_by=resource_key))
def test_documents_and_json_round_trip(batch: list[Resource]) -> None:
    documents: list[dict[str, Any]] = [resource_to_dict(resource) for resource in batch]
    assert [resource_from_dict(document) for document in documents] == batch
    assert load_manifests(json.dumps({"apiVersion": "v1", "kind": "List", "items": documents})) == batch
