"""Kubernetes NetworkPolicy as Calico sees it (libcalico-go ``K8sNetworkPolicyToCalico``).

A policy becomes a namespaced Calico policy ``knp.default.<name>`` in the ``default`` tier at order
1000: selector ``projectcalico.org/orchestrator == 'k8s'`` plus the podSelector terms; ``policyTypes``
as given, Ingress only when empty. The Kubernetes API server never hands Calico an empty list: it
defaults it to Ingress, plus Egress when the policy has egress rules (``SetDefaults_NetworkPolicy``),
so a manifest is read with that default; a StagedKubernetesNetworkPolicy is a Calico resource that
is not defaulted. Every rule allows. Each Kubernetes rule becomes one rule per
protocol (sorted by name: SCTP, TCP, UDP) and, inside it, one per peer, in order: that fixes the rule
indices that traces carry. A port without protocol is TCP, ``endPort`` makes a range, a rule without
ports matches every protocol, no peers means any peer. ``ipBlock`` becomes ``nets``/``notNets``; a
peer without namespaceSelector stays in the policy's namespace, ``namespaceSelector: {}`` means any
namespace. Implicit isolation follows from the default tier's end-of-tier deny.
"""

from __future__ import annotations

from typing import Final

from ringfence.model import (
    DEFAULT_TIER,
    KNP_ORDER,
    Action,
    EntityRule,
    K8sPeer,
    K8sPolicySpec,
    K8sPort,
    K8sRule,
    LabelSelector,
    PolicySpec,
    PolicyType,
    Port,
    PortRange,
    Rule,
)
from ringfence.selector.ast import Compare, Comparison, Has, InSet, Node, Not

KNP_PREFIX: Final = "knp.default."
_ORCHESTRATOR_TERM: Final = str(Compare("projectcalico.org/orchestrator", Comparison.EQ, "k8s"))


def knp_name(name: str) -> str:
    """The Calico name of Kubernetes policy ``name`` (``knp.default.<name>``)."""
    return KNP_PREFIX + name


def label_selector_terms(selector: LabelSelector) -> list[str]:
    """Calico selector terms of a Kubernetes label selector (matchLabels sorted by key, then expressions)."""
    terms: list[Node] = [
        Compare(key, Comparison.EQ, selector.match_labels[key]) for key in sorted(selector.match_labels)
    ]
    for requirement in selector.match_expressions:
        operator = requirement.operator
        if operator == "In":
            terms.append(InSet(requirement.key, requirement.values))
        elif operator == "NotIn":
            terms.append(InSet(requirement.key, requirement.values, negated=True))
        elif operator == "Exists":
            terms.append(Has(requirement.key))
        elif operator == "DoesNotExist":
            terms.append(Not(Has(requirement.key)))
        else:
            raise ValueError(f"unknown label selector operator {operator!r}")
    return [str(term) for term in terms]


def pod_selector(selector: LabelSelector | None) -> str:
    """A pod selector: the orchestrator term, then the selector's terms."""
    terms = [_ORCHESTRATOR_TERM]
    if selector is not None:
        terms.extend(label_selector_terms(selector))
    return " && ".join(terms)


def namespace_selector(selector: LabelSelector | None) -> str | None:
    """A namespace selector: None when absent (stay in the policy's namespace), ``all()`` when empty."""
    if selector is None:
        return None
    terms = label_selector_terms(selector)
    return " && ".join(terms) if terms else "all()"


def _ports(port: K8sPort) -> list[Port] | None:
    if port.port is None:
        return None
    if isinstance(port.port, str) and not port.port.isdigit():
        return [port.port]
    first = int(port.port)
    return [PortRange(first, port.end_port if port.end_port is not None else first)]


def _protocol_ports(ports: tuple[K8sPort, ...]) -> dict[str, list[Port] | None]:
    if not ports:
        return {"": None}
    grouped: dict[str, list[Port] | None] = {}
    for port in ports:
        protocol = (port.protocol or "TCP").upper()
        numbers = _ports(port)
        if numbers is None:
            grouped[protocol] = None
        elif protocol not in grouped or grouped[protocol]:
            grouped[protocol] = [*(grouped.get(protocol) or []), *numbers]
    return grouped


def _peer_entity(peer: K8sPeer | None, ports: tuple[Port, ...], *, with_ports: bool) -> EntityRule:
    given_ports = ports if with_ports else ()
    if peer is None:
        return EntityRule(ports=given_ports)
    if peer.ip_block is not None:
        return EntityRule(nets=(peer.ip_block.cidr,), not_nets=peer.ip_block.except_, ports=given_ports)
    return EntityRule(
        selector=pod_selector(peer.pod_selector),
        namespace_selector=namespace_selector(peer.namespace_selector),
        ports=given_ports,
    )


def convert_rules(rules: tuple[K8sRule, ...], *, ingress: bool) -> tuple[Rule, ...]:
    """The Calico rules of a Kubernetes policy's ingress or egress list, in Calico's order."""
    converted: list[Rule] = []
    for rule in rules:
        grouped = _protocol_ports(rule.ports)
        peers: tuple[K8sPeer | None, ...] = rule.peers or (None,)
        for protocol in sorted(grouped):
            ports = tuple(grouped[protocol] or ())
            for peer in peers:
                if ingress:
                    source = _peer_entity(peer, (), with_ports=False)
                    destination = EntityRule(ports=ports)
                else:
                    source = EntityRule()
                    destination = _peer_entity(peer, ports, with_ports=True)
                converted.append(
                    Rule(action=Action.ALLOW, protocol=protocol or None, source=source, destination=destination)
                )
    return tuple(converted)


def convert_spec(spec: K8sPolicySpec, *, api_defaults: bool = True) -> PolicySpec:
    """The Calico policy spec of a Kubernetes NetworkPolicy spec.

    ``api_defaults``: apply the API server's default for an empty ``policyTypes`` first (true for a
    ``networking.k8s.io/v1`` NetworkPolicy, false for a StagedKubernetesNetworkPolicy).
    """
    written = spec.policy_types
    if not written and api_defaults and spec.egress:
        written = (PolicyType.INGRESS, PolicyType.EGRESS)
    types: list[PolicyType] = []
    if PolicyType.INGRESS in written:
        types.append(PolicyType.INGRESS)
    if PolicyType.EGRESS in written:
        types.append(PolicyType.EGRESS)
    return PolicySpec(
        tier=DEFAULT_TIER,
        order=KNP_ORDER,
        selector=pod_selector(spec.pod_selector),
        types=tuple(types) or (PolicyType.INGRESS,),
        types_given=True,
        ingress=convert_rules(spec.ingress, ingress=True),
        egress=convert_rules(spec.egress, ingress=False),
    )
