"""Recommended rules: one per (direction, peer, protocol), ports merged, provenance in annotations.

A rule is accumulated under its *template* (the rule without destination ports and annotations), so
observations of the same peer and protocol merge, and an existing policy's rules are refined in place
rather than duplicated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from ringfence.model import EMPTY_LABELS, PolicyType, Port, Rule, frozen_labels
from ringfence.recommend.ports import has_ports, merge_ports
from ringfence.recommend.status import ANNOTATION_PREFIX, format_time, parse_time

FLOWS_ANNOTATION = ANNOTATION_PREFIX + "flows"
BYTES_ANNOTATION = ANNOTATION_PREFIX + "bytes"
FIRST_SEEN_ANNOTATION = ANNOTATION_PREFIX + "first-seen"
LAST_SEEN_ANNOTATION = ANNOTATION_PREFIX + "last-seen"
PEER_ANNOTATION = ANNOTATION_PREFIX + "peer"


@dataclass(frozen=True, slots=True, eq=False)
class RuleKey:
    """Identity of a recommended rule: its direction and the rule without ports and annotations."""

    direction: PolicyType
    template: Rule

    def _identity(self) -> tuple[object, ...]:
        # Rule itself is unhashable (its annotations are a mapping); every other field is.
        rule = self.template
        return (
            self.direction,
            rule.action,
            rule.protocol,
            rule.not_protocol,
            rule.icmp,
            rule.not_icmp,
            rule.ip_version,
            rule.source,
            rule.destination,
            rule.http,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RuleKey) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())


@dataclass(slots=True)
class RuleEvidence:
    """What is known about one rule: its ports and the traffic it was learned from."""

    ports: set[Port | int] = field(default_factory=set)
    any_port: bool = False
    flows: int = 0
    bytes: int = 0
    first_seen: int | None = None
    last_seen: int | None = None
    peer: str = ""

    def observe(self, port: int | None, *, flows: int, byte_count: int, start: int, end: int) -> None:
        """Add one flow record's port and, when ``flows`` is positive, its counters."""
        if port is None:
            self.any_port = True
        else:
            self.ports.add(port)
        if flows <= 0:
            return
        self.flows += flows
        self.bytes += byte_count
        self.first_seen = start if self.first_seen is None else min(self.first_seen, start)
        self.last_seen = end if self.last_seen is None else max(self.last_seen, end)

    def annotations(self) -> Mapping[str, str]:
        """The provenance annotations of the rule."""
        notes = {FLOWS_ANNOTATION: str(self.flows), BYTES_ANNOTATION: str(self.bytes)}
        if self.first_seen is not None:
            notes[FIRST_SEEN_ANNOTATION] = format_time(self.first_seen)
        if self.last_seen is not None:
            notes[LAST_SEEN_ANNOTATION] = format_time(self.last_seen)
        if self.peer:
            notes[PEER_ANNOTATION] = self.peer
        return frozen_labels(notes)


def template_of(rule: Rule) -> Rule:
    """``rule`` without its destination ports and annotations."""
    destination = dataclasses.replace(rule.destination, ports=())
    return dataclasses.replace(rule, destination=destination, metadata=EMPTY_LABELS)


def evidence_of(rule: Rule) -> RuleEvidence:
    """The evidence an existing rule carries: its ports and the provenance its annotations recorded."""
    notes = rule.metadata
    first = parse_time(notes.get(FIRST_SEEN_ANNOTATION))
    last = parse_time(notes.get(LAST_SEEN_ANNOTATION))
    return RuleEvidence(
        ports=set(rule.destination.ports),
        any_port=not rule.destination.ports,
        flows=_integer(notes.get(FLOWS_ANNOTATION)),
        bytes=_integer(notes.get(BYTES_ANNOTATION)),
        first_seen=int(first.timestamp()) if first else None,
        last_seen=int(last.timestamp()) if last else None,
        peer=notes.get(PEER_ANNOTATION, ""),
    )


def build_rule(key: RuleKey, evidence: RuleEvidence) -> Rule:
    """The rule of ``key`` with the merged ports and provenance of ``evidence``."""
    template = key.template
    ports: tuple[Port, ...] = ()
    if template.protocol is not None and has_ports(template.protocol) and not evidence.any_port:
        ports = merge_ports(evidence.ports)
    destination = dataclasses.replace(template.destination, ports=ports)
    return dataclasses.replace(template, destination=destination, metadata=evidence.annotations())


def _integer(text: str | None) -> int:
    try:
        return max(int(text or 0), 0)
    except ValueError:
        return 0
