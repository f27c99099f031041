"""Rules compiled to lists of three-valued checks (calico.md section 3, points 5-7).

Every criterion a rule gives must hold; inside a list (nets, ports, names) any element may match.
A criterion that needs a fact the record lacks is ``MAYBE``:

* ``nets``/``notNets`` and network sets by CIDR: see ``endpoint.py`` (aggregated external address).
* ``ports``: a missing port (aggregated) is ``MAYBE``; a named port is ``MAYBE`` on a pod or host
  endpoint (its port names are not in the record) and never matches an external address.
* ``icmp``/``notICMP`` on an ICMP flow: flows carry no ICMP type, ``MAYBE``.
* ``ipVersion`` with no address known: ``MAYBE``.
* ``serviceAccounts.selector`` on a pod: service-account labels are not in flows, ``MAYBE``
  (``names`` are exact when the record holds the service account).
* ``http``: flows hold no HTTP facts, ``MAYBE`` on TCP.
* ``services``: ``YES`` when the record's destination service is the one named; otherwise ``MAYBE``
  (a pod may back several services). Source services are always ``MAYBE``.
* ``domains`` (egress Allow only): one of the record's ``dest_domains`` matches; an empty list, or a
  destination inside the cluster, does not match.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from operator import attrgetter

from ringfence.engine.domains import DomainPattern, any_domain_matches, compile_domains
from ringfence.engine.endpoint import Entity
from ringfence.engine.facts import ICMP_PROTOCOLS, Facts, protocol_number
from ringfence.engine.identity import Identity
from ringfence.engine.netsets import IPNetwork, NetworkSetIndex, parse_network
from ringfence.engine.selectors import CompiledSelector, SelectorPool, entity_rule_selectors
from ringfence.engine.tristate import MAYBE, NO, YES, Tri
from ringfence.model import EMPTY_ENTITY_RULE, Action, EntityRule, Port, PortRange, Rule

Check = Callable[[Facts], Tri]

RULE_ACTIONS = {Action.ALLOW: "allow", Action.DENY: "deny", Action.PASS: "pass", Action.LOG: "log"}


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    """One rule: its index in the policy's list for its direction, its action and its checks.

    ``facts_read`` picks, from :class:`Facts`, everything the checks read: two evaluations with
    equal picks share the rule's result (most rules read only the peer and the port).
    """

    index: int
    action: str  # allow | deny | pass | log
    checks: tuple[Check, ...]
    facts_read: Callable[[Facts], object] | None = None

    def match(self, facts: Facts) -> Tri:
        """Whether the rule matches: ``NO`` as soon as one check fails, ``MAYBE`` if one cannot tell."""
        result = YES
        for check in self.checks:
            value = check(facts)
            if value == NO:
                return NO
            if value == MAYBE:
                result = MAYBE
        return result


class RuleCompiler:
    """Compiles the rules of one engine (selectors interned in its pool, sets from its index)."""

    def __init__(self, selectors: SelectorPool, netsets: NetworkSetIndex) -> None:
        self.selectors = selectors
        self.netsets = netsets
        self.uses_source_ports = False
        self.uses_domains = bool(netsets.has_domains)
        self.uses_services = False

    def compile_rules(
        self, rules: tuple[Rule, ...], namespace: str | None, *, egress: bool
    ) -> tuple[CompiledRule, ...]:
        """Compile a policy's ingress or egress rules."""
        return tuple(self.compile_rule(index, rule, namespace, egress=egress) for index, rule in enumerate(rules))

    def compile_rule(self, index: int, rule: Rule, namespace: str | None, *, egress: bool) -> CompiledRule:
        """Compile one rule; raise ValueError (bad selector, CIDR or domain) naming the problem."""
        action = RULE_ACTIONS[Action(rule.action)]
        checks: list[Check] = []
        reads: set[str] = set()
        if rule.protocol is not None:
            checks.append(_protocol_check(_rule_protocol(rule.protocol), negated=False))
        if rule.not_protocol is not None:
            checks.append(_protocol_check(_rule_protocol(rule.not_protocol), negated=True))
        if rule.ip_version is not None:
            checks.append(_ip_version_check(rule.ip_version))
            reads.update(("source", "dest"))
        if rule.icmp is not None and (rule.icmp.type is not None or rule.icmp.code is not None):
            checks.append(_icmp_check)
        if rule.not_icmp is not None and (rule.not_icmp.type is not None or rule.not_icmp.code is not None):
            checks.append(_icmp_check)
        if rule.http is not None and (rule.http.methods or rule.http.paths):
            checks.append(_http_check)
        if checks:
            reads.add("proto")
        checks.extend(self._entity_checks(rule.source, namespace, reads, source=True, egress_allow=False))
        egress_allow = egress and action == "allow"
        checks.extend(self._entity_checks(rule.destination, namespace, reads, source=False, egress_allow=egress_allow))
        facts_read = attrgetter(*sorted(reads)) if reads else None
        return CompiledRule(index, action, tuple(checks), facts_read)

    def _entity_checks(
        self, entity: EntityRule, namespace: str | None, reads: set[str], *, source: bool, egress_allow: bool
    ) -> list[Check]:
        side = _source_side if source else _dest_side
        side_name = "source" if source else "dest"
        checks: list[Check] = []
        named_ports = any(isinstance(port, str) for port in (*entity.ports, *entity.not_ports))
        if named_ports or replace(entity, ports=(), not_ports=()) != EMPTY_ENTITY_RULE:
            reads.add(side_name)
        if entity.ports or entity.not_ports:
            reads.add("source_port" if source else "dest_port")
        if entity.domains or (egress_allow and not source and self.netsets.has_domains):
            reads.add("domains")
        if entity.services is not None:
            reads.update(("service_namespace", "service_name"))
        if entity.ports:
            checks.append(_port_check(entity.ports, source=source, negated=False))
        if entity.not_ports:
            checks.append(_port_check(entity.not_ports, source=source, negated=True))
        if source and (entity.ports or entity.not_ports):
            self.uses_source_ports = True
        if entity.nets:
            checks.append(_nets_check(side, tuple(parse_network(net) for net in entity.nets), negated=False))
        if entity.not_nets:
            checks.append(_nets_check(side, tuple(parse_network(net) for net in entity.not_nets), negated=True))
        positive, negative = entity_rule_selectors(entity, namespace)
        if positive is not None:
            selector = self.selectors.get(positive)
            with_domains = self.netsets if (egress_allow and not source and self.netsets.has_domains) else None
            checks.append(_selector_check(side, selector, with_domains))
        if negative is not None:
            checks.append(_not_selector_check(side, self.selectors.get(negative)))
        if entity.domains:
            self.uses_domains = True
            if source or not egress_allow:
                checks.append(_never)  # Calico allows domains only in the destination of egress Allow rules
            else:
                checks.append(_domains_check(compile_domains(entity.domains)))
        if entity.services is not None:
            self.uses_services = True
            if source:
                checks.append(_maybe)
            else:
                service_namespace = entity.services.namespace or namespace
                checks.append(_service_check(service_namespace, entity.services.name))
        return checks


def _rule_protocol(protocol: str | int) -> int:
    number = protocol_number(protocol)
    if number is None:
        raise ValueError(f"unknown protocol {protocol!r}")
    return number


def _source_side(facts: Facts) -> Entity:
    return facts.source


def _dest_side(facts: Facts) -> Entity:
    return facts.dest


def _never(_facts: Facts) -> Tri:
    return NO


def _maybe(_facts: Facts) -> Tri:
    return MAYBE


def _protocol_check(number: int, *, negated: bool) -> Check:
    hit, miss = (NO, YES) if negated else (YES, NO)

    def check(facts: Facts) -> Tri:
        proto = facts.proto
        if proto is None:
            return MAYBE
        return hit if proto == number else miss

    return check


def _ip_version_check(version: int) -> Check:
    def check(facts: Facts) -> Tri:
        known = facts.ip_version
        if known is None:
            return MAYBE
        return YES if known == version else NO

    return check


def _icmp_check(facts: Facts) -> Tri:
    if facts.proto is None or facts.proto in ICMP_PROTOCOLS:
        return MAYBE
    return NO


def _http_check(facts: Facts) -> Tri:
    if facts.proto is None or facts.proto == 6:
        return MAYBE
    return NO


def _port_check(ports: tuple[Port, ...], *, source: bool, negated: bool) -> Check:
    ranges = tuple((port.first, port.last) for port in ports if isinstance(port, PortRange))
    numbers = frozenset(first for first, last in ranges if first == last)
    spans = tuple((first, last) for first, last in ranges if first != last)
    named = any(isinstance(port, str) for port in ports)
    hit, miss = (NO, YES) if negated else (YES, NO)

    def check(facts: Facts) -> Tri:
        port = facts.source_port if source else facts.dest_port
        if port is None:
            if ranges:
                return MAYBE
        elif port in numbers:
            return hit
        else:
            for first, last in spans:
                if first <= port <= last:
                    return hit
        if named and (facts.source if source else facts.dest).is_calico:
            return MAYBE  # the endpoint's port names are not in the record
        return miss

    return check


def _nets_check(side: Callable[[Facts], Entity], networks: tuple[IPNetwork, ...], *, negated: bool) -> Check:
    def check(facts: Facts) -> Tri:
        result = side(facts).in_networks(networks)
        if negated and result != MAYBE:
            return NO if result == YES else YES
        return result

    return check


def _members_match(members: tuple[tuple[Identity, Tri], ...], selector: CompiledSelector) -> Tri:
    result = NO
    for identity, membership in members:
        value = selector.evaluate(identity)
        if value == NO:
            continue
        if value == YES and membership == YES:
            return YES
        result = MAYBE
    return result


def _selector_check(
    side: Callable[[Facts], Entity], selector: CompiledSelector, netsets: NetworkSetIndex | None
) -> Check:
    def check(facts: Facts) -> Tri:
        entity = side(facts)
        result = _members_match(entity.members, selector)
        if result != YES and netsets is not None and facts.domains and not entity.is_calico:
            # egress Allow: a set also matches through its allowedEgressDomains
            for entry in netsets.allowing_domains(facts.domains):
                if selector.evaluate(entry.identity) == YES:
                    return YES
        return result

    return check


def _not_selector_check(side: Callable[[Facts], Entity], selector: CompiledSelector) -> Check:
    def check(facts: Facts) -> Tri:
        result = _members_match(side(facts).members, selector)
        if result == MAYBE:
            return MAYBE
        return NO if result == YES else YES

    return check


def _domains_check(patterns: tuple[DomainPattern, ...]) -> Check:
    def check(facts: Facts) -> Tri:
        if not facts.domains or facts.dest.is_calico:
            return NO
        return YES if any_domain_matches(patterns, facts.domains) else NO

    return check


def _service_check(namespace: str | None, name: str) -> Check:
    def check(facts: Facts) -> Tri:
        if facts.service_name == name and (namespace is None or facts.service_namespace == namespace):
            return YES
        return MAYBE

    return check
