"""The Kubernetes ``NetworkPolicy`` spec (``networking.k8s.io/v1``), read and checked as the API server does."""

from __future__ import annotations

import ipaddress
from typing import Any, Final

from ringfence.manifests import checks
from ringfence.manifests.fields import Reader, join
from ringfence.model import (
    IPBlock,
    K8sPeer,
    K8sPolicySpec,
    K8sPort,
    K8sRule,
    LabelSelector,
    LabelSelectorRequirement,
    PolicyType,
)

K8S_SPEC_FIELDS: Final = ("podSelector", "policyTypes", "ingress", "egress")
K8S_PROTOCOLS: Final = ("TCP", "UDP", "SCTP")
_OPERATORS: Final = ("In", "NotIn", "Exists", "DoesNotExist")


def read_k8s_spec(reader: Reader, spec: dict[str, Any], path: str) -> K8sPolicySpec:
    """A Kubernetes NetworkPolicy spec (the fields already checked against ``K8S_SPEC_FIELDS``)."""
    pod_selector = read_label_selector(reader, spec.get("podSelector"), join(path, "podSelector"))
    types: list[PolicyType] = []
    for item_path, item in reader.items(spec, "policyTypes", path):
        policy_type = reader.enum_value(item, item_path, PolicyType)
        if policy_type in types:
            reader.fail(item_path, f"{policy_type} is listed more than once")
        elif policy_type is not None:
            types.append(policy_type)
    return K8sPolicySpec(
        pod_selector=pod_selector or LabelSelector(),
        policy_types=tuple(types),
        ingress=_rules(reader, spec, "ingress", "from", path),
        egress=_rules(reader, spec, "egress", "to", path),
    )


def read_label_selector(reader: Reader, value: Any, path: str) -> LabelSelector | None:
    """A ``metav1.LabelSelector`` (None when absent or not a mapping)."""
    if value is None:
        return None
    fields = reader.mapping(value, path, ("matchLabels", "matchExpressions"))
    if not isinstance(value, dict):
        return None
    requirements: list[LabelSelectorRequirement] = []
    for item_path, item in reader.items(fields, "matchExpressions", path):
        expression = reader.mapping(item, item_path, ("key", "operator", "values"))
        key = reader.field_text(expression, "key", item_path)
        operator = reader.field_text(expression, "operator", item_path)
        values = reader.texts(expression, "values", item_path)
        if key is None:
            reader.fail(join(item_path, "key"), "required")
        elif problem := checks.qualified_name_problem(key):
            reader.fail(join(item_path, "key"), problem)
        if operator is None:
            reader.fail(join(item_path, "operator"), f"required: one of {', '.join(_OPERATORS)}")
        elif operator not in _OPERATORS:
            reader.fail(join(item_path, "operator"), f"{operator!r} is not one of {', '.join(_OPERATORS)}")
        elif operator in {"In", "NotIn"} and not values:
            reader.fail(join(item_path, "values"), f"must not be empty with operator {operator}")
        elif operator in {"Exists", "DoesNotExist"} and values:
            reader.fail(join(item_path, "values"), f"must be empty with operator {operator}")
        if key is not None and operator is not None:
            requirements.append(LabelSelectorRequirement(key=key, operator=operator, values=values))
    return LabelSelector(
        match_labels=reader.string_map(fields, "matchLabels", path, labels=True),
        match_expressions=tuple(requirements),
    )


def _rules(reader: Reader, spec: dict[str, Any], key: str, peers_key: str, path: str) -> tuple[K8sRule, ...]:
    rules: list[K8sRule] = []
    for rule_path, item in reader.items(spec, key, path):
        fields = reader.mapping(item, rule_path, ("ports", peers_key))
        ports = tuple(
            port
            for port_path, port_value in reader.items(fields, "ports", rule_path)
            if (port := _port(reader, port_value, port_path)) is not None
        )
        peers = tuple(
            peer
            for peer_path, peer_value in reader.items(fields, peers_key, rule_path)
            if (peer := _peer(reader, peer_value, peer_path)) is not None
        )
        rules.append(K8sRule(ports=ports, peers=peers))
    return tuple(rules)


def _port(reader: Reader, value: Any, path: str) -> K8sPort | None:
    fields = reader.mapping(value, path, ("protocol", "port", "endPort"))
    protocol = reader.field_text(fields, "protocol", path) or "TCP"
    if protocol not in K8S_PROTOCOLS:
        reader.fail(join(path, "protocol"), f"{protocol!r} is not one of {', '.join(K8S_PROTOCOLS)}")
    port = fields.get("port")
    if isinstance(port, str):
        if problem := checks.port_name_problem(port):
            reader.fail(join(path, "port"), problem)
    elif port is not None:
        port = reader.integer(port, join(path, "port"), 1, checks.PORT_MAX)
    end_port = None
    if "endPort" in fields:
        end_port = reader.integer(fields["endPort"], join(path, "endPort"), 1, checks.PORT_MAX)
        if not isinstance(port, int):
            reader.fail(join(path, "endPort"), "needs a numeric port")
        elif end_port is not None and end_port < port:
            reader.fail(join(path, "endPort"), f"{end_port} is below port {port}")
    return K8sPort(protocol=protocol, port=port, end_port=end_port)


def _peer(reader: Reader, value: Any, path: str) -> K8sPeer | None:
    fields = reader.mapping(value, path, ("podSelector", "namespaceSelector", "ipBlock"))
    if not isinstance(value, dict):
        return None
    ip_block = _ip_block(reader, fields["ipBlock"], join(path, "ipBlock")) if "ipBlock" in fields else None
    peer = K8sPeer(
        pod_selector=read_label_selector(reader, fields.get("podSelector"), join(path, "podSelector")),
        namespace_selector=read_label_selector(
            reader, fields.get("namespaceSelector"), join(path, "namespaceSelector")
        ),
        ip_block=ip_block,
    )
    if not fields:
        reader.fail(path, "a peer needs podSelector, namespaceSelector or ipBlock")
    elif "ipBlock" in fields and len(fields) > 1:
        reader.fail(path, "ipBlock cannot be combined with podSelector or namespaceSelector in one peer")
    return peer


def _ip_block(reader: Reader, value: Any, path: str) -> IPBlock | None:
    fields = reader.mapping(value, path, ("cidr", "except"))
    cidr = reader.field_text(fields, "cidr", path)
    excepts = reader.texts(fields, "except", path)
    if cidr is None:
        if isinstance(value, dict):
            reader.fail(join(path, "cidr"), "required")
        return None
    network = _network(cidr)
    if network is None:
        reader.fail(join(path, "cidr"), f"{cidr!r} is not a valid CIDR (address/prefix length)")
        return IPBlock(cidr=cidr, except_=excepts)
    for index, text in enumerate(excepts):
        where = join(join(path, "except"), index)
        hole = _network(text)
        if hole is None:
            reader.fail(where, f"{text!r} is not a valid CIDR (address/prefix length)")
            continue
        # subnet_of wants both networks of one IP version, which the first test ensures (mypy cannot see it).
        if hole.version != network.version or not hole.subnet_of(network) or hole == network:  # type: ignore[arg-type]
            reader.fail(where, f"{text} must be strictly inside the block's cidr {cidr}")
    return IPBlock(cidr=cidr, except_=excepts)


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """A CIDR as Kubernetes takes it: an address and a prefix length (host bits allowed)."""
    if "/" not in text:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
