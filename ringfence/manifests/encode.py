"""Model resources to calicoctl-style documents: what the user wrote, without defaults as noise.

Fields are written in a fixed, readable order (apiVersion, kind, metadata, spec; inside a spec the
identity fields first, then selectors, then rules). Defaults are left out except those calicoctl
always shows: a policy's ``tier``, a tier's ``defaultAction`` and a Kubernetes ``podSelector``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ringfence.model import (
    CALICO_API_VERSION,
    K8S_CORE_API_VERSION,
    K8S_NETWORKING_API_VERSION,
    EntityRule,
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    ICMPFields,
    K8sPeer,
    K8sPolicySpec,
    K8sPort,
    K8sRule,
    KubernetesNetworkPolicy,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    NetworkSet,
    ObjectMeta,
    PolicySpec,
    Port,
    PortRange,
    Resource,
    Rule,
    StagedAction,
    StagedGlobalNetworkPolicy,
    StagedKubernetesNetworkPolicy,
    StagedNetworkPolicy,
    Tier,
)


def encode_resource(resource: Resource) -> dict[str, Any]:
    """The document for ``resource`` (plain dicts, lists, strings and numbers, ready for YAML or JSON)."""
    if isinstance(resource, KubernetesNetworkPolicy):
        head = {"apiVersion": K8S_NETWORKING_API_VERSION, "kind": "NetworkPolicy"}
    elif isinstance(resource, Namespace):
        head = {"apiVersion": K8S_CORE_API_VERSION, "kind": "Namespace"}
    else:
        head = {"apiVersion": CALICO_API_VERSION, "kind": resource.kind}
    document: dict[str, Any] = {**head, "metadata": _metadata(resource.metadata)}
    if isinstance(resource, Tier):
        spec: dict[str, Any] = _some(order=_number(resource.order))
        spec["defaultAction"] = resource.default_action.value
        document["spec"] = spec
    elif isinstance(resource, NetworkPolicy | GlobalNetworkPolicy):
        document["spec"] = _policy_spec(resource.spec)
    elif isinstance(resource, StagedNetworkPolicy | StagedGlobalNetworkPolicy):
        document["spec"] = _staged(resource.staged_action) | _policy_spec(resource.spec)
    elif isinstance(resource, KubernetesNetworkPolicy):
        document["spec"] = _k8s_spec(resource.spec)
    elif isinstance(resource, StagedKubernetesNetworkPolicy):
        document["spec"] = _staged(resource.staged_action) | _k8s_spec(resource.spec)
    elif isinstance(resource, NetworkSet | GlobalNetworkSet):
        document["spec"] = _some(nets=list(resource.nets), allowedEgressDomains=list(resource.allowed_egress_domains))
    return document


@dataclass(frozen=True, slots=True)
class _Kept:
    """A sub-object written even when empty (``icmp: {}`` says something, unlike ``source: {}``)."""

    value: dict[str, Any]


def _some(**fields: Any) -> dict[str, Any]:
    """The given fields without the empty ones (None, False, "", [] and {}); zero is kept."""
    result: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, _Kept):
            result[key] = value.value
        elif not (value is None or value is False or (isinstance(value, str | list | dict) and not value)):
            result[key] = value
    return result


def _number(value: float | None) -> int | float | None:
    """Orders print as calicoctl prints them: ``100``, not ``100.0``."""
    if value is not None and value.is_integer():
        return int(value)
    return value


def _metadata(meta: ObjectMeta) -> dict[str, Any]:
    return {"name": meta.name} | _some(
        namespace=meta.namespace,
        labels=dict(meta.labels),
        annotations=dict(meta.annotations),
        resourceVersion=meta.resource_version,
        uid=meta.uid,
        creationTimestamp=meta.creation_timestamp,
    )


def _staged(action: StagedAction) -> dict[str, Any]:
    return {} if action is StagedAction.SET else {"stagedAction": action.value}


def _policy_spec(spec: PolicySpec) -> dict[str, Any]:
    return {"tier": spec.tier} | _some(
        order=_number(spec.order),
        selector=spec.selector,
        namespaceSelector=spec.namespace_selector,
        serviceAccountSelector=spec.service_account_selector,
        types=[policy_type.value for policy_type in spec.types] if spec.types_given else None,
        ingress=[_rule(rule) for rule in spec.ingress],
        egress=[_rule(rule) for rule in spec.egress],
        doNotTrack=spec.do_not_track,
        preDNAT=spec.pre_dnat,
        applyOnForward=spec.apply_on_forward,
        performanceHints=list(spec.performance_hints),
    )


def _rule(rule: Rule) -> dict[str, Any]:
    return {"action": rule.action.value} | _some(
        protocol=rule.protocol,
        notProtocol=rule.not_protocol,
        icmp=_icmp(rule.icmp),
        notICMP=_icmp(rule.not_icmp),
        ipVersion=rule.ip_version,
        metadata={"annotations": dict(rule.metadata)} if rule.metadata else None,
        http=None
        if rule.http is None
        else _Kept(
            _some(
                methods=list(rule.http.methods),
                paths=[_some(exact=path.exact, prefix=path.prefix) for path in rule.http.paths],
            )
        ),
        source=_entity(rule.source),
        destination=_entity(rule.destination),
    )


def _icmp(fields: ICMPFields | None) -> _Kept | None:
    if fields is None:
        return None
    return _Kept(_some(type=fields.type, code=fields.code))


def _entity(entity: EntityRule) -> dict[str, Any]:
    accounts = entity.service_accounts
    services = entity.services
    return _some(
        nets=list(entity.nets),
        notNets=list(entity.not_nets),
        selector=entity.selector,
        notSelector=entity.not_selector,
        namespaceSelector=entity.namespace_selector,
        serviceAccounts=None
        if accounts is None
        else _Kept(_some(names=list(accounts.names), selector=accounts.selector)),
        services=None if services is None else _some(name=services.name, namespace=services.namespace),
        ports=[_port(port) for port in entity.ports],
        notPorts=[_port(port) for port in entity.not_ports],
        domains=list(entity.domains),
    )


def _port(port: Port) -> int | str:
    if isinstance(port, PortRange):
        return port.first if port.first == port.last else str(port)
    return port


def _k8s_spec(spec: K8sPolicySpec) -> dict[str, Any]:
    return {"podSelector": _label_selector(spec.pod_selector)} | _some(
        policyTypes=[policy_type.value for policy_type in spec.policy_types],
        ingress=[_k8s_rule(rule, "from") for rule in spec.ingress],
        egress=[_k8s_rule(rule, "to") for rule in spec.egress],
    )


def _k8s_rule(rule: K8sRule, peers_key: str) -> dict[str, Any]:
    return _some(ports=[_k8s_port(port) for port in rule.ports], **{peers_key: [_peer(peer) for peer in rule.peers]})


def _k8s_port(port: K8sPort) -> dict[str, Any]:
    return {"protocol": port.protocol} | _some(port=port.port, endPort=port.end_port)


def _peer(peer: K8sPeer) -> dict[str, Any]:
    document: dict[str, Any] = {}
    if peer.pod_selector is not None:
        document["podSelector"] = _label_selector(peer.pod_selector)
    if peer.namespace_selector is not None:
        document["namespaceSelector"] = _label_selector(peer.namespace_selector)
    if peer.ip_block is not None:
        document["ipBlock"] = {"cidr": peer.ip_block.cidr} | _some(**{"except": list(peer.ip_block.except_)})
    return document


def _label_selector(selector: LabelSelector) -> dict[str, Any]:
    return _some(
        matchLabels=dict(selector.match_labels),
        matchExpressions=[
            {"key": requirement.key, "operator": requirement.operator} | _some(values=list(requirement.values))
            for requirement in selector.match_expressions
        ],
    )
