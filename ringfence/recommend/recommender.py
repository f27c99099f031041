"""Learn a staged policy from the allowed flows of a scope (calico.md section 5)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from ringfence.flows.record import Endpoint, Flow, LabelPairs
from ringfence.model import (
    EMPTY_LABELS,
    Action,
    EntityRule,
    GlobalNetworkSet,
    NetworkSet,
    ObjectMeta,
    PolicySpec,
    PolicyType,
    Protocol,
    Rule,
    StagedAction,
    StagedNetworkPolicy,
    frozen_labels,
)
from ringfence.recommend.labels import ALL_SELECTOR, common_labels, equality_selector, stable_labels
from ringfence.recommend.peers import PeerId, kube_dns_entity, peer_endpoint, peer_entities, peer_id
from ringfence.recommend.ports import has_ports, rule_protocol
from ringfence.recommend.rules import RuleEvidence, RuleKey, build_rule, evidence_of, template_of
from ringfence.recommend.scope import Scope
from ringfence.recommend.status import (
    DEFAULT_STABILIZATION_PERIOD,
    LAST_CHANGED_ANNOTATION,
    LAST_UPDATED_ANNOTATION,
    OBSERVED_UNTIL_ANNOTATION,
    RECOMMENDATION_LABEL,
    SCOPE_ANNOTATION,
    STATUS_ANNOTATION,
    RecommendationStatus,
    format_time,
    parse_time,
    status_for,
)

_DNS_PORT = 53
_DNS_PROTOCOLS: tuple[Protocol, ...] = ("UDP", "TCP")
_TYPES = (PolicyType.INGRESS, PolicyType.EGRESS)


class RecommendationError(ValueError):
    """No policy can be recommended for the scope (no flows, or nothing stable to select it by)."""


class Outcome(StrEnum):
    """What a run did to the scope's policy."""

    CREATED = "created"
    UPDATED = "updated"  # rules changed
    UNCHANGED = "unchanged"  # same rules; provenance and status refreshed
    FROZEN = "frozen"  # the user set it to Set/Delete or enforced it: left alone
    IGNORED = "ignored"  # the user set it to Ignore: left alone


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The scope's staged policy after a run, how settled it is, and what the run did to it."""

    policy: StagedNetworkPolicy
    status: RecommendationStatus | None  # None when the policy is no longer a recommendation
    outcome: Outcome
    flows: int  # flow records of the scope that this run learned from

    @property
    def written(self) -> bool:
        """Whether the policy should be stored (False when it was left alone)."""
        return self.outcome not in (Outcome.FROZEN, Outcome.IGNORED)


@dataclass(slots=True)
class _Observations:
    evidence: dict[tuple[PolicyType, PeerId, Protocol], RuleEvidence]
    endpoints: dict[tuple[PolicyType, PeerId], set[Endpoint]]
    own_labels: set[LabelPairs]
    records: int
    observed_until: int | None


def recommend(
    flows: Iterable[Flow],
    scope: Scope,
    now: datetime,
    existing: StagedNetworkPolicy | None = None,
    *,
    enforced: bool = False,
    network_sets: Iterable[NetworkSet | GlobalNetworkSet] = (),
    stabilization_period: timedelta = DEFAULT_STABILIZATION_PERIOD,
) -> Recommendation:
    """Recommend (or refine) the staged policy of ``scope`` from ``flows``.

    Rules: egress from the flows the scope's pods sent, ingress from those they received, one rule per
    (peer, protocol) with merged ports, plus DNS to kube-dns. ``existing`` is the scope's current
    staged policy: with ``stagedAction: Learn`` its rules are kept and refined (flows that ended before
    its ``observed-until`` mark add no counts twice); with ``Set``, ``Delete`` or ``Ignore``, or when
    ``enforced`` (a NetworkPolicy of the same name exists), it is returned unchanged. ``now`` stamps the
    annotations and, with ``stabilization_period``, decides the status. Raises
    :class:`RecommendationError` when there is nothing to learn from.
    """
    if existing is not None and (enforced or existing.staged_action is not StagedAction.LEARN):
        outcome = Outcome.IGNORED if existing.staged_action is StagedAction.IGNORE else Outcome.FROZEN
        return Recommendation(existing, None, outcome, 0)

    previous_mark = parse_time(existing.metadata.annotations.get(OBSERVED_UNTIL_ANNOTATION)) if existing else None
    seen = _observe(flows, scope, int(previous_mark.timestamp()) if previous_mark else None)
    if existing is None and seen.records == 0:
        raise RecommendationError(f"no allowed flows for {scope.describe()} in the window")

    merged = _merge_rules(existing, seen, scope, {_set_key(s): s.metadata.labels for s in network_sets})
    ingress = tuple(build_rule(key, ev) for key, ev in merged.items() if key.direction is PolicyType.INGRESS)
    egress = tuple(build_rule(key, ev) for key, ev in merged.items() if key.direction is PolicyType.EGRESS)
    selector = existing.spec.selector if existing else _policy_selector(scope, seen)
    spec = PolicySpec(
        tier=scope.tier, selector=selector, types=_TYPES, types_given=True, ingress=ingress, egress=egress
    )
    if existing is not None:
        spec = PolicySpec(
            tier=existing.spec.tier,
            order=existing.spec.order,
            selector=selector,
            service_account_selector=existing.spec.service_account_selector,
            types=_TYPES,
            types_given=True,
            ingress=ingress,
            egress=egress,
        )

    changed = existing is None or _shape(existing.spec) != _shape(spec)
    last_changed = now
    if existing is not None and not changed:
        last_changed = parse_time(existing.metadata.annotations.get(LAST_CHANGED_ANNOTATION)) or now
    status = status_for(now - last_changed, stabilization_period)
    marks = [int(previous_mark.timestamp())] if previous_mark else []
    if seen.observed_until is not None:
        marks.append(seen.observed_until)
    mark = max(marks, default=None)

    annotations = dict(existing.metadata.annotations) if existing else {}
    annotations.update(
        {
            SCOPE_ANNOTATION: scope.describe(),
            STATUS_ANNOTATION: status.value,
            LAST_CHANGED_ANNOTATION: format_time(last_changed),
            LAST_UPDATED_ANNOTATION: format_time(now),
        }
    )
    if mark is not None:
        annotations[OBSERVED_UNTIL_ANNOTATION] = format_time(mark)
    labels = dict(existing.metadata.labels) if existing else {}
    labels.setdefault(RECOMMENDATION_LABEL, scope.kind.value)
    metadata = ObjectMeta(
        name=existing.metadata.name if existing else scope.policy_name(),
        namespace=scope.namespace,
        labels=frozen_labels(labels),
        annotations=frozen_labels(annotations),
        resource_version=existing.metadata.resource_version if existing else None,
        uid=existing.metadata.uid if existing else None,
        creation_timestamp=existing.metadata.creation_timestamp if existing else None,
    )
    policy = StagedNetworkPolicy(metadata=metadata, spec=spec, staged_action=StagedAction.LEARN)
    outcome = Outcome.CREATED if existing is None else Outcome.UPDATED if changed else Outcome.UNCHANGED
    return Recommendation(policy, status, outcome, seen.records)


def _observe(flows: Iterable[Flow], scope: Scope, counted_until: int | None) -> _Observations:
    seen = _Observations({}, {}, set(), 0, None)
    for flow in flows:
        direction = scope.direction(flow)
        if direction is None:
            continue
        seen.records += 1
        peer = peer_id(flow, direction, scope)
        protocol = rule_protocol(flow.proto)
        evidence = seen.evidence.setdefault((direction, peer, protocol), RuleEvidence())
        counted = counted_until is None or flow.end_time > counted_until
        evidence.observe(
            flow.dest.port if has_ports(protocol) else None,
            flows=flow.num_flows if counted else 0,
            byte_count=flow.bytes_in + flow.bytes_out,
            start=flow.start_time,
            end=flow.end_time,
        )
        seen.endpoints.setdefault((direction, peer), set()).add(peer_endpoint(flow, direction))
        own = flow.source if direction is PolicyType.EGRESS else flow.dest
        seen.own_labels.add(own.labels)
        seen.observed_until = flow.end_time if seen.observed_until is None else max(seen.observed_until, flow.end_time)
    return seen


def _merge_rules(
    existing: StagedNetworkPolicy | None,
    seen: _Observations,
    scope: Scope,
    set_labels: Mapping[tuple[str | None, str], Mapping[str, str]],
) -> dict[RuleKey, RuleEvidence]:
    merged: dict[RuleKey, RuleEvidence] = {}
    if existing is not None:
        for direction, rules in (
            (PolicyType.INGRESS, existing.spec.ingress),
            (PolicyType.EGRESS, existing.spec.egress),
        ):
            for rule in rules:
                _absorb(merged, RuleKey(direction, template_of(rule)), evidence_of(rule))
    for protocol in _DNS_PROTOCOLS:
        dns = RuleKey(PolicyType.EGRESS, Rule(action=Action.ALLOW, protocol=protocol, destination=kube_dns_entity()))
        if dns not in merged:
            merged[dns] = RuleEvidence(ports={_DNS_PORT}, peer="kube-dns (always kept)")

    entities = {key: peer_entities(key[1], endpoints, scope, set_labels) for key, endpoints in seen.endpoints.items()}
    learned: list[tuple[tuple[str, str, str], RuleKey, RuleEvidence]] = []
    for (direction, peer, protocol), evidence in seen.evidence.items():
        for entity, description in entities[direction, peer]:
            copy = dataclasses.replace(evidence, ports=set(evidence.ports), peer=description)
            order = (direction.value, description, str(protocol))
            learned.append((order, _rule_key(direction, protocol, entity), copy))
    for _, key, evidence in sorted(learned, key=lambda item: item[0]):
        _absorb(merged, key, evidence)
    return merged


def _rule_key(direction: PolicyType, protocol: Protocol, entity: EntityRule) -> RuleKey:
    if direction is PolicyType.EGRESS:
        return RuleKey(direction, Rule(action=Action.ALLOW, protocol=protocol, destination=entity))
    return RuleKey(direction, Rule(action=Action.ALLOW, protocol=protocol, source=entity))


def _absorb(merged: dict[RuleKey, RuleEvidence], key: RuleKey, evidence: RuleEvidence) -> None:
    current = merged.get(key)
    if current is None:
        merged[key] = evidence
        return
    current.ports |= evidence.ports
    current.any_port = current.any_port or evidence.any_port
    current.flows += evidence.flows
    current.bytes += evidence.bytes
    firsts = [t for t in (current.first_seen, evidence.first_seen) if t is not None]
    lasts = [t for t in (current.last_seen, evidence.last_seen) if t is not None]
    current.first_seen = min(firsts) if firsts else None
    current.last_seen = max(lasts) if lasts else None
    current.peer = current.peer or evidence.peer


def _policy_selector(scope: Scope, seen: _Observations) -> str:
    if scope.workload is None:
        return ALL_SELECTOR
    labels = common_labels(stable_labels(pairs) for pairs in seen.own_labels)
    if not labels:
        raise RecommendationError(f"{scope.describe()} has no stable labels to select it by")
    return equality_selector(labels)


def _shape(spec: PolicySpec) -> tuple[object, ...]:
    """The parts of a spec that decide verdicts: rules without annotations, selector, types."""
    return (
        spec.selector,
        spec.types,
        tuple(_bare(r) for r in spec.ingress),
        tuple(_bare(r) for r in spec.egress),
    )


def _bare(rule: Rule) -> Rule:
    return dataclasses.replace(rule, metadata=EMPTY_LABELS)


def _set_key(network_set: NetworkSet | GlobalNetworkSet) -> tuple[str | None, str]:
    namespace = network_set.metadata.namespace if isinstance(network_set, NetworkSet) else None
    return (namespace, network_set.metadata.name)
