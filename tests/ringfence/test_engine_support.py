"""Builders shared by the engine tests: resources and flow records in a line each.

Collected by pytest like every ``test_*`` module, but it holds no tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ringfence.engine import PolicyEngine, Verdict
from ringfence.flows.record import Endpoint, EndpointType, Flow, FlowAction, Reporter, label_pairs
from ringfence.model import (
    Action,
    EntityRule,
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    Namespace,
    NetworkPolicy,
    NetworkSet,
    ObjectMeta,
    PolicySpec,
    PolicyType,
    PortRange,
    Resource,
    Rule,
    StagedAction,
    StagedGlobalNetworkPolicy,
    StagedNetworkPolicy,
    Tier,
    default_policy_types,
)

ALL_TYPES = (PolicyType.INGRESS, PolicyType.EGRESS)


def namespace(name: str, **labels: str) -> Namespace:
    return Namespace(ObjectMeta(name, labels=labels))


def tier(name: str, order: float | None, default_action: str = "Deny") -> Tier:
    return Tier(ObjectMeta(name), order, Action(default_action))


def ports(*items: int | str | tuple[int, int]) -> tuple[PortRange | str, ...]:
    out: list[PortRange | str] = []
    for item in items:
        if isinstance(item, tuple):
            out.append(PortRange(*item))
        elif isinstance(item, int):
            out.append(PortRange(item, item))
        else:
            out.append(item)
    return tuple(out)


def rule(
    action: str = "Allow", *, source: EntityRule | None = None, destination: EntityRule | None = None, **fields: Any
) -> Rule:
    return Rule(Action(action), source=source or EntityRule(), destination=destination or EntityRule(), **fields)


def spec(
    *,
    tier_name: str = "default",
    order: float | None = None,
    selector: str = "",
    namespace_selector: str | None = None,
    service_account_selector: str = "",
    ingress: Iterable[Rule] = (),
    egress: Iterable[Rule] = (),
    types: Iterable[PolicyType] | None = None,
    **flags: bool,
) -> PolicySpec:
    ingress_rules, egress_rules = tuple(ingress), tuple(egress)
    return PolicySpec(
        tier=tier_name,
        order=order,
        selector=selector,
        namespace_selector=namespace_selector,
        service_account_selector=service_account_selector,
        types=tuple(types) if types is not None else default_policy_types(ingress_rules, egress_rules),
        types_given=types is not None,
        ingress=ingress_rules,
        egress=egress_rules,
        **flags,
    )


def gnp(name: str, *, staged: str | None = None, **fields: Any) -> Resource:
    policy_spec = spec(**fields)
    meta = ObjectMeta(name)
    if staged is not None:
        return StagedGlobalNetworkPolicy(meta, policy_spec, StagedAction(staged))
    return GlobalNetworkPolicy(meta, policy_spec)


def np(name: str, ns: str, *, staged: str | None = None, **fields: Any) -> Resource:
    policy_spec = spec(**fields)
    meta = ObjectMeta(name, ns)
    if staged is not None:
        return StagedNetworkPolicy(meta, policy_spec, StagedAction(staged))
    return NetworkPolicy(meta, policy_spec)


def global_set(name: str, nets: Iterable[str] = (), domains: Iterable[str] = (), **labels: str) -> GlobalNetworkSet:
    return GlobalNetworkSet(ObjectMeta(name, labels=labels), tuple(nets), tuple(domains))


def network_set(name: str, ns: str, nets: Iterable[str] = (), domains: Iterable[str] = (), **labels: str) -> NetworkSet:
    return NetworkSet(ObjectMeta(name, ns, labels), tuple(nets), tuple(domains))


def pod(
    ns: str,
    labels: Mapping[str, str] | None = None,
    *,
    ip: str | None = None,
    port: int | None = None,
    service_account: str | None = None,
    name_aggr: str = "pod-*",
) -> Endpoint:
    return Endpoint(
        EndpointType.WORKLOAD,
        name_aggr,
        ns,
        labels=label_pairs(labels or {}),
        ip=ip,
        port=port,
        service_account=service_account,
    )


def host(labels: Mapping[str, str] | None = None, *, ip: str | None = None, port: int | None = None) -> Endpoint:
    return Endpoint(EndpointType.HOST, "node-1", None, labels=label_pairs(labels or {}), ip=ip, port=port)


def net(ip: str | None = None, *, name_aggr: str = "pub", port: int | None = None) -> Endpoint:
    return Endpoint(EndpointType.NETWORK, name_aggr, None, ip=ip, port=port)


def set_endpoint(
    name: str, ns: str | None = None, *, ip: str | None = None, port: int | None = None, **labels: str
) -> Endpoint:
    return Endpoint(EndpointType.NETWORK_SET, name, ns, labels=label_pairs(labels), ip=ip, port=port)


def flow(
    source: Endpoint,
    dest: Endpoint,
    *,
    reporter: str = "src",
    proto: str = "tcp",
    domains: Iterable[str] = (),
    service: tuple[str, str] | None = None,
) -> Flow:
    return Flow(
        start_time=1_700_000_000,
        end_time=1_700_000_300,
        source=source,
        dest=dest,
        proto=proto,
        reporter=Reporter(reporter),
        action=FlowAction.ALLOW,
        dest_domains=tuple(domains),
        dest_service_namespace=service[0] if service else None,
        dest_service_name=service[1] if service else None,
    )


def egress(resources: Iterable[Resource], source: Endpoint, dest: Endpoint, **fields: Any) -> Verdict:
    """Egress on ``source`` (a record reported by the source)."""
    return PolicyEngine(resources).evaluate(flow(source, dest, reporter="src", **fields))


def ingress(resources: Iterable[Resource], source: Endpoint, dest: Endpoint, **fields: Any) -> Verdict:
    """Ingress on ``dest`` (a record reported by the destination)."""
    return PolicyEngine(resources).evaluate(flow(source, dest, reporter="dst", **fields))


def allow_to(**entity: Any) -> Rule:
    return rule("Allow", destination=EntityRule(**entity))


def deny_to(**entity: Any) -> Rule:
    return rule("Deny", destination=EntityRule(**entity))


def allow_from(**entity: Any) -> Rule:
    return rule("Allow", source=EntityRule(**entity))
