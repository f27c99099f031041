"""The policy engine façade: compile once, evaluate flows fast, in both the enforced and the staged view.

Directions (calico.md section 3): a record reported by the source (``src``) is evaluated as egress on
the source endpoint, one reported by the destination (``dst``) as ingress on the destination. A
``fwd`` record is traffic a host forwards: only ``applyOnForward`` global policies (preDNAT and
doNotTrack ones included) of the host's endpoint apply, and the record does not identify that host
endpoint; the engine answers ``allow`` (empty trace) when the view has no such policy and
``uncertain`` otherwise.

Policies whose tier is not defined are not active, as in Calico; they are listed in
:attr:`PolicyEngine.inactive`. The built-in tiers exist without a Tier resource, as Calico 3.30+
creates them: ``default`` (order 1,000,000, Deny), ``kube-admin`` (1,000, Pass) and ``kube-baseline``
(10,000,000, Pass); a tier without applicable policy is skipped, so an empty built-in tier changes
nothing. ``doNotTrack`` and ``preDNAT`` policies act in other dataplane chains and take no part
in the evaluation of ``src``/``dst`` records. Staged policies: see ``views.py``.

Speed: selectors and rules are compiled once; policies are indexed by the labels their selectors
require; what applies to an endpoint is planned once per endpoint and direction; a rule's result is
shared by every evaluation with the same facts the rule reads; a verdict is computed once per
evaluation key (direction, both endpoints, protocol, ports that matter, domains, service).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

from ringfence.engine.compile import CompiledRule, RuleCompiler
from ringfence.engine.endpoint import Entity, EntityFactory
from ringfence.engine.errors import NotACalicoEndpointError
from ringfence.engine.facts import Facts, protocol_number
from ringfence.engine.identity import IdentityFactory, NamespaceDirectory
from ringfence.engine.netsets import NetworkSetIndex
from ringfence.engine.policies import SHORT_KINDS, CompiledPolicy, PolicyCompiler
from ringfence.engine.selectors import SelectorPool
from ringfence.engine.tiers import CompiledTier, TierWalk
from ringfence.engine.trace import TraceWriter
from ringfence.engine.tristate import YES, Tri
from ringfence.engine.verdict import EGRESS, FORWARD, INGRESS, ConnectionVerdict, Verdict, VerdictAction
from ringfence.engine.views import PolicyViews, staged_view
from ringfence.flows.record import Endpoint, Flow, Reporter
from ringfence.model import (
    DEFAULT_TIER,
    DEFAULT_TIER_ORDER,
    KUBE_ADMIN_TIER,
    KUBE_BASELINE_TIER,
    Action,
    AnyPolicy,
    GlobalNetworkSet,
    Namespace,
    NetworkSet,
    ObjectMeta,
    Resource,
    Tier,
)

_CACHE_LIMIT: Final = 1_000_000
BUILT_IN_TIERS: Final = (
    (DEFAULT_TIER, DEFAULT_TIER_ORDER, Action.DENY),
    (KUBE_ADMIN_TIER, 1_000.0, Action.PASS),
    (KUBE_BASELINE_TIER, 10_000_000.0, Action.PASS),
)
"""Tiers Calico creates itself (name, order, default action); a Tier resource of the same name replaces one."""
_SOURCE: Final = Reporter.SOURCE
_DESTINATION: Final = Reporter.DESTINATION


def flow_of(flow: Flow | Mapping[str, Any]) -> Flow:
    """A :class:`Flow` as is, or a Calico flow-log record dict parsed into one."""
    if isinstance(flow, Flow):
        return flow
    from ringfence.flows.formats.calico import parse_calico  # noqa: PLC0415 - parsers load on first use

    return parse_calico(flow)


class PolicyEngine:
    """Evaluates flows against a fixed set of resources.

    ``resources``: Tiers, every policy kind (staged ones included), network sets and Namespaces;
    anything else is ignored.
    ``unavailable``: policies known by name, tier, order, selector and types whose rules are not
    available (for instance hidden from the caller); an evaluation that reaches one raises
    :class:`~ringfence.engine.errors.PolicyUnavailableError`, as Calico's checker does for a policy
    missing from its store. Raises :class:`~ringfence.engine.errors.PolicyCompileError` for a
    malformed policy. Engines are not thread-safe (their caches are plain dicts).
    """

    def __init__(self, resources: Iterable[Resource], *, unavailable: Iterable[AnyPolicy] = ()) -> None:
        tiers: dict[str, Tier] = {}
        policies: list[AnyPolicy] = []
        namespaces: list[Namespace] = []
        sets: list[NetworkSet | GlobalNetworkSet] = []
        for resource in resources:
            if isinstance(resource, Tier):
                tiers[resource.name] = resource
            elif isinstance(resource, Namespace):
                namespaces.append(resource)
            elif isinstance(resource, NetworkSet | GlobalNetworkSet):
                sets.append(resource)
            elif resource.kind in SHORT_KINDS:
                policies.append(resource)
        for name, order, action in BUILT_IN_TIERS:
            tiers.setdefault(name, Tier(ObjectMeta(name), order, action))
        self.tiers: tuple[CompiledTier, ...] = tuple(
            sorted((CompiledTier.of(tier) for tier in tiers.values()), key=lambda tier: tier.sort_key)
        )
        self.namespaces = NamespaceDirectory.of(namespaces)
        identities = IdentityFactory(self.namespaces)
        self.network_sets = NetworkSetIndex(sets, identities)
        self._entities = EntityFactory(identities, self.network_sets)
        rules = RuleCompiler(SelectorPool(), self.network_sets)
        compiler = PolicyCompiler(rules.selectors, rules)
        compiled = [compiler.compile(policy) for policy in policies]
        compiled += [compiler.compile(policy, placeholder=True) for policy in unavailable]
        tier_names = {tier.name for tier in self.tiers}
        self.policies: tuple[CompiledPolicy, ...] = tuple(p for p in compiled if p.tier in tier_names)
        self.inactive: tuple[CompiledPolicy, ...] = tuple(p for p in compiled if p.tier not in tier_names)
        self._views = PolicyViews(self.tiers, [p for p in self.policies if not p.host_only])
        # Forwarded traffic meets applyOnForward global policies, preDNAT and doNotTrack ones included.
        self._forward = tuple(
            any(p.apply_on_forward and p.namespace is None for p in view)
            for view in ([p for p in self.policies if not p.staged], staged_view(self.policies))
        )
        self._verdicts: dict[tuple[object, ...], Verdict] = {}
        self._rule_results: dict[tuple[CompiledRule, object], Tri] = {}
        self._traces = TraceWriter()
        self.uses_source_ports = rules.uses_source_ports
        self.uses_domains = rules.uses_domains
        self.uses_services = rules.uses_services

    # --- public API ----------------------------------------------------------------------------

    def evaluate(self, flow: Flow | Mapping[str, Any]) -> Verdict:
        """The verdict of a flow record (a :class:`Flow` or a Calico flow-log record dict) for its reporter."""
        return self.evaluate_many((flow,))[0]

    def evaluate_many(self, flows: Iterable[Flow | Mapping[str, Any]]) -> list[Verdict]:
        """``[evaluate(f) for f in flows]``, evaluating each distinct evaluation key once."""
        resolve = self._entities.resolve
        verdicts = self._verdicts
        source_ports = self.uses_source_ports
        domains = self.uses_domains
        services = self.uses_services
        # Within one call an endpoint object is resolved once; keeping the object in the value means
        # its id cannot be reused by another endpoint during the call.
        seen: dict[int, tuple[Endpoint, Entity]] = {}
        results: list[Verdict] = []
        append = results.append
        for item in flows:
            record = item if type(item) is Flow else flow_of(item)
            source, dest = record.source, record.dest
            known = seen.get(id(source))
            if known is None:
                known = seen[id(source)] = (source, resolve(source))
            source_entity = known[1]
            known = seen.get(id(dest))
            if known is None:
                known = seen[id(dest)] = (dest, resolve(dest))
            reporter = record.reporter
            if reporter is _SOURCE:
                egress = True
            elif reporter is _DESTINATION:
                egress = False
            else:
                append(self._forward_verdict())
                continue
            key = (
                egress,
                source_entity,
                known[1],
                record.proto,
                source.port if source_ports else None,
                dest.port,
                record.dest_domains if domains else None,
                (record.dest_service_namespace, record.dest_service_name) if services else None,
            )
            verdict = verdicts.get(key)
            if verdict is None:
                verdict = self._miss(key, record, source_entity, known[1], egress=egress)
            append(verdict)
        return results

    def evaluate_direction(  # noqa: PLR0917 - the positional signature is fixed by design.md
        self,
        endpoint: Endpoint,
        peer: Endpoint,
        direction: str,
        proto: str | int,
        port: int | None,
        domains: Sequence[str] = (),
    ) -> Verdict:
        """One side of a connection: ``egress`` on ``endpoint`` towards ``peer`` or ``ingress`` from it.

        ``port`` is the destination port (the peer's for egress, the endpoint's for ingress);
        ``domains`` the names linked to the destination address.
        """
        if direction not in (EGRESS, INGRESS):
            raise ValueError(f"direction must be 'ingress' or 'egress', not {direction!r}")
        egress = direction == EGRESS
        subject = self._entities.resolve(endpoint)
        other = self._entities.resolve(peer)
        facts = Facts(
            source=subject if egress else other,
            dest=other if egress else subject,
            proto=protocol_number(proto),
            source_port=None,
            dest_port=port,
            domains=tuple(domains),
            egress=egress,
        )
        return self._evaluate_side(subject, facts)

    def evaluate_connection(self, flow: Flow | Mapping[str, Any]) -> ConnectionVerdict:
        """Both sides of a flow's connection: egress on a Calico source, ingress on a Calico destination."""
        record = flow_of(flow)
        source = self._entities.resolve(record.source)
        dest = self._entities.resolve(record.dest)
        return ConnectionVerdict(
            self._side(record, egress=True) if source.is_calico else None,
            self._side(record, egress=False) if dest.is_calico else None,
        )

    def clear_caches(self) -> None:
        """Drop cached verdicts, rule results and plans (compiled policies stay)."""
        self._verdicts.clear()
        self._rule_results.clear()
        self._views.clear()

    # --- evaluation ----------------------------------------------------------------------------

    def _side(self, record: Flow, *, egress: bool) -> Verdict:
        reporter = _SOURCE if egress else _DESTINATION
        if record.reporter is not reporter:
            record = replace(record, reporter=reporter)
        return self.evaluate_many((record,))[0]

    def _miss(self, key: tuple[object, ...], record: Flow, source: Entity, dest: Entity, *, egress: bool) -> Verdict:
        facts = Facts(
            source=source,
            dest=dest,
            proto=protocol_number(record.proto),
            source_port=record.source.port,
            dest_port=record.dest.port,
            domains=record.dest_domains,
            egress=egress,
            service_namespace=record.dest_service_namespace,
            service_name=record.dest_service_name,
        )
        verdict = self._evaluate_side(source if egress else dest, facts)
        if len(self._verdicts) >= _CACHE_LIMIT:
            self._verdicts.clear()
        self._verdicts[key] = verdict
        return verdict

    def _forward_verdict(self) -> Verdict:
        actions: list[VerdictAction] = ["uncertain" if governed else "allow" for governed in self._forward]
        return Verdict(actions[0], actions[1], (), (), FORWARD)

    def _evaluate_side(self, subject: Entity, facts: Facts) -> Verdict:
        identity = subject.identity
        if identity is None or not subject.is_calico:
            side = "source" if facts.egress else "destination"
            raise NotACalicoEndpointError(f"the {side} is a {subject.type.value!r} endpoint, not a pod or a host")
        enforced_plan, staged_plan = self._views.plan(identity, egress=facts.egress)
        results = self._rule_results
        if len(results) >= _CACHE_LIMIT:
            results.clear()

        def match(rule: CompiledRule) -> Tri:
            read = rule.facts_read
            if read is None:
                return rule.match(facts) if rule.checks else YES
            key = (rule, read(facts))
            value = results.get(key)
            if value is None:
                value = results[key] = rule.match(facts)
            return value

        profile = self._traces.profile_step(subject)
        enforced = TierWalk(enforced_plan, match, profile).run()
        # Most endpoints have no staged policy: their staged view is the enforced one.
        staged = enforced if staged_plan is None else TierWalk(staged_plan, match, profile).run()
        hits, trace = self._traces.render(enforced.steps, subject)
        staged_hits, staged_trace = self._traces.render(staged.steps, subject)
        return Verdict(
            action=_action(enforced.actions),
            staged_action=_action(staged.actions),
            trace=trace,
            staged_trace=staged_trace,
            direction=EGRESS if facts.egress else INGRESS,
            hits=hits,
            staged_hits=staged_hits,
        )


def _action(actions: frozenset[str]) -> VerdictAction:
    if len(actions) == 1:
        if "allow" in actions:
            return "allow"
        if "deny" in actions:
            return "deny"
    return "uncertain"
