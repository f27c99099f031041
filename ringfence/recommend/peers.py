"""The peer of a flow, as a recommended rule names it (calico.md section 5).

A peer is first identified (which workload, network set, domain set or address class), then, once all
its flows are known, written as an entity rule: workloads by their stable labels (intersected over the
peer's flows, so the selector matches every one of them), other namespaces by ``namespaceSelector``,
network sets by their labels, public names by ``domains``, private addresses by the RFC 1918 nets, and
the rest of the public internet by protocol and port alone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from ringfence.flows.record import Endpoint, EndpointType, Flow
from ringfence.model import EntityRule, PolicyType
from ringfence.recommend.labels import (
    ALL_SELECTOR,
    common_labels,
    equality_selector,
    namespace_name_selector,
    stable_labels,
)
from ringfence.recommend.scope import Scope, ScopeKind

PRIVATE_NETS_V4: Final = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
"""The RFC 1918 ranges."""
PRIVATE_NETS_V6: Final = ("fc00::/7",)
"""IPv6 unique-local addresses, which flow logs aggregate as ``pvt`` too."""

GLOBAL_SELECTOR: Final = "global()"
KUBE_DNS_NAMESPACE: Final = "kube-system"
KUBE_DNS_LABELS: Final[Mapping[str, str]] = {"k8s-app": "kube-dns"}
# Names the cluster's own DNS answers: never worth a domain rule (the peer is a pod or a service).
_CLUSTER_SUFFIXES: Final = (".cluster.local", ".svc", ".pod", ".local", ".internal")
_CLUSTER_INFIXES: Final = (".svc.", ".pod.")
_PRIVATE: Final = "pvt"


@dataclass(frozen=True, slots=True)
class PeerId:
    """Which peer a flow has: ``kind`` and the facts that tell peers of that kind apart."""

    kind: str  # workload | namespace | host | networkset | domains | private | public
    namespace: str | None = None
    name: str | None = None
    domains: tuple[str, ...] = ()


def is_cluster_name(domain: str) -> bool:
    """Whether ``domain`` is a cluster-internal name (``*.svc.cluster.local`` and the like)."""
    name = domain.lower().rstrip(".")
    return name.endswith(_CLUSTER_SUFFIXES) or any(infix in name for infix in _CLUSTER_INFIXES) or "." not in name


def public_domains(flow: Flow) -> tuple[str, ...]:
    """The flow's destination names worth a ``domains`` rule: lower case, sorted, cluster names dropped."""
    return tuple(sorted({d.lower().rstrip(".") for d in flow.dest_domains if not is_cluster_name(d)}))


def peer_id(flow: Flow, direction: PolicyType, scope: Scope) -> PeerId:
    """Identify the peer of ``flow`` seen from the scope's pod in ``direction``."""
    peer = flow.dest if direction is PolicyType.EGRESS else flow.source
    if peer.type is EndpointType.WORKLOAD:
        if scope.kind is ScopeKind.NAMESPACE:
            return PeerId("namespace", namespace=peer.namespace)
        return PeerId("workload", namespace=peer.namespace, name=peer.name_aggr)
    if peer.type is EndpointType.HOST:
        return PeerId("host", name=peer.name_aggr)
    if peer.type is EndpointType.NETWORK_SET:
        return PeerId("networkset", namespace=peer.namespace, name=peer.name_aggr)
    if direction is PolicyType.EGRESS:
        domains = public_domains(flow)
        if domains and peer.name_aggr != _PRIVATE:
            return PeerId("domains", domains=domains)
    return PeerId("private" if peer.name_aggr == _PRIVATE else "public")


def peer_endpoint(flow: Flow, direction: PolicyType) -> Endpoint:
    """The endpoint on the peer's side of ``flow``."""
    return flow.dest if direction is PolicyType.EGRESS else flow.source


def peer_entities(
    peer: PeerId,
    endpoints: Iterable[Endpoint],
    scope: Scope,
    set_labels: Mapping[tuple[str | None, str], Mapping[str, str]],
) -> list[tuple[EntityRule, str]]:
    """The entity rules (without ports) naming ``peer``, each with a readable description.

    One entity in general; addresses of both IP families need one per family, as a Calico rule cannot
    mix them. ``endpoints`` are the peer's sides of all its flows; ``set_labels`` gives the labels of
    known network sets by (namespace, name), for records that carry none.
    """
    if peer.kind == "private":
        return _private_entities(endpoints)
    if peer.kind == "host":
        return _host_entities(peer, endpoints)
    return [_peer_entity(peer, endpoints, scope, set_labels)]


def _peer_entity(
    peer: PeerId,
    endpoints: Iterable[Endpoint],
    scope: Scope,
    set_labels: Mapping[tuple[str | None, str], Mapping[str, str]],
) -> tuple[EntityRule, str]:
    if peer.kind == "namespace":
        namespace = peer.namespace or ""
        return EntityRule(namespace_selector=namespace_name_selector(namespace)), f"namespace {namespace}"
    if peer.kind == "workload":
        labels = common_labels(stable_labels(e.labels) for e in endpoints)
        selector = equality_selector(labels)
        where = f"{peer.namespace}/{peer.name}"
        if peer.namespace == scope.namespace:
            return EntityRule(selector=selector), f"workload {where}"
        namespace_selector = namespace_name_selector(peer.namespace or "")
        return (
            EntityRule(selector=None if selector == ALL_SELECTOR else selector, namespace_selector=namespace_selector),
            f"workload {where}",
        )
    if peer.kind == "networkset":
        return _network_set_entity(peer, endpoints, scope, set_labels)
    if peer.kind == "domains":
        return EntityRule(domains=peer.domains), "domains " + ", ".join(peer.domains)
    return EntityRule(), "public addresses"


def kube_dns_entity() -> EntityRule:
    """The cluster DNS service's pods: always reachable from a recommended policy."""
    return EntityRule(
        selector=equality_selector(KUBE_DNS_LABELS),
        namespace_selector=namespace_name_selector(KUBE_DNS_NAMESPACE),
    )


def _network_set_entity(
    peer: PeerId,
    endpoints: Iterable[Endpoint],
    scope: Scope,
    set_labels: Mapping[tuple[str | None, str], Mapping[str, str]],
) -> tuple[EntityRule, str]:
    name = peer.name or ""
    labels = common_labels(dict(e.labels) for e in endpoints)
    labels.pop("projectcalico.org/namespace", None)
    if not labels:
        labels = dict(set_labels.get((peer.namespace, name), {}))
    description = f"network set {peer.namespace}/{name}" if peer.namespace else f"global network set {name}"
    if not labels:
        # Nothing to select the set by: fall back on the address class of its traffic.
        return EntityRule(), description + " (no labels: any address)"
    selector = equality_selector(labels)
    if peer.namespace is None:
        return EntityRule(selector=selector, namespace_selector=GLOBAL_SELECTOR), description
    if peer.namespace == scope.namespace:
        return EntityRule(selector=selector), description
    return EntityRule(selector=selector, namespace_selector=namespace_name_selector(peer.namespace)), description


def _private_entities(endpoints: Iterable[Endpoint]) -> list[tuple[EntityRule, str]]:
    ips = [e.ip for e in endpoints]
    # A record that lost the address could be either family: allow the whole private space.
    families = {4, 6} if None in ips else {ipaddress.ip_address(ip).version for ip in ips if ip is not None}
    entities: list[tuple[EntityRule, str]] = []
    if 4 in families:
        entities.append((EntityRule(nets=PRIVATE_NETS_V4), "private addresses"))
    if 6 in families:
        entities.append((EntityRule(nets=PRIVATE_NETS_V6), "private addresses (IPv6)"))
    return entities


def _host_entities(peer: PeerId, endpoints: Iterable[Endpoint]) -> list[tuple[EntityRule, str]]:
    seen = list(endpoints)
    description = f"host {peer.name}"
    labels = common_labels(dict(e.labels) for e in seen)
    if labels:
        return [(EntityRule(selector=equality_selector(labels), namespace_selector=GLOBAL_SELECTOR), description)]
    ips = {e.ip for e in seen}
    if None in ips:
        return [(EntityRule(), description + " (no labels or address: any address)")]
    by_family: dict[int, list[str]] = {}
    for ip in sorted(str(ip) for ip in ips):
        address = ipaddress.ip_address(ip)
        by_family.setdefault(address.version, []).append(f"{ip}/{address.max_prefixlen}")
    return [(EntityRule(nets=tuple(nets)), description) for _, nets in sorted(by_family.items())]
