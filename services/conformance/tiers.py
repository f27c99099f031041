"""Conformance of the policy engine's tier evaluation with Calico's vectors (``calico-tier-evaluation.json``).

Each vector lists tiers (in order) holding ingress or egress policies (staged or not, possibly
``missing_from_store``) with rules that only carry an action, and the endpoint's profiles. It is
mapped onto the engine like this:

* tiers become Tier resources ordered as listed; policies become GlobalNetworkPolicies (or staged
  ones) selecting every endpoint, ordered as listed in their tier;
* a policy ``missing_from_store`` is passed to the engine as *unavailable* (known by name and place,
  content unavailable): reaching it fails the evaluation, as Calico's checker fails;
* profiles: an endpoint whose profile allows is a pod (its namespace profile ``kns.<ns>`` allows);
  an endpoint with no profile is a host endpoint (denied after the last tier). Other profiles cannot
  be expressed with Kubernetes namespaces and are reported as failures.

``expect.enforced_only`` is compared with the enforced verdict, ``expect.staged_as_enforced`` with
the staged view; ``"error"`` expects :class:`ringfence.engine.PolicyUnavailableError`. An expected
``trace`` must equal the enforced hits entry by entry (tier, action, rule index and, when given, name).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ringfence.engine import PolicyEngine, PolicyUnavailableError, Verdict
from ringfence.flows.hits import hit_policy_name
from ringfence.flows.record import Endpoint, EndpointType, Flow, FlowAction, PolicyHit, Reporter
from ringfence.model import (
    Action,
    AnyPolicy,
    GlobalNetworkPolicy,
    ObjectMeta,
    PolicySpec,
    PolicyType,
    Resource,
    Rule,
    StagedGlobalNetworkPolicy,
    Tier,
)

_NAMESPACE = "conformance"


class _VectorError(ValueError):
    """A vector the mapping cannot express."""


def _policy(tier: str, order: int, data: Mapping[str, Any], direction: str) -> AnyPolicy:
    key = "egress_rules" if direction == "egress" else "ingress_rules"
    rules = tuple(Rule(action=Action(rule["action"])) for rule in data.get(key, []))
    policy_type = PolicyType.EGRESS if direction == "egress" else PolicyType.INGRESS
    spec = PolicySpec(
        tier=tier,
        order=float(order),
        selector="all()",
        types=(policy_type,),
        types_given=True,
        ingress=rules if direction == "ingress" else (),
        egress=rules if direction == "egress" else (),
    )
    meta = ObjectMeta(f"{tier}.{data['name']}")
    if data.get("staged", False):
        return StagedGlobalNetworkPolicy(meta, spec)
    return GlobalNetworkPolicy(meta, spec)


def _endpoint(profiles: Sequence[Mapping[str, Any]], direction: str) -> Endpoint:
    if not profiles:
        return Endpoint(EndpointType.HOST, "host-1", labels=(("host", "1"),), ip="192.0.2.10")
    key = "egress_rules" if direction == "egress" else "ingress_rules"
    for profile in profiles:
        actions = [rule.get("action") for rule in profile.get(key, [])]
        if actions[:1] != ["Allow"]:
            raise _VectorError(f"profile {profile.get('name')!r} with rules {actions} is not a namespace profile")
    return Endpoint(EndpointType.WORKLOAD, "pod-*", _NAMESPACE, labels=(("app", "pod"),), ip="192.0.2.20")


def _build(vector: Mapping[str, Any]) -> tuple[PolicyEngine, Flow]:
    direction = vector.get("direction", "ingress")
    resources: list[Resource] = []
    unavailable: list[AnyPolicy] = []
    for tier_order, tier in enumerate(vector["tiers"]):
        resources.append(Tier(ObjectMeta(tier["name"]), float(tier_order + 1), Action(tier["default_action"])))
        key = "egress_policies" if direction == "egress" else "ingress_policies"
        for order, data in enumerate(tier.get(key, [])):
            policy = _policy(tier["name"], order, data, direction)
            (unavailable if data.get("missing_from_store") else resources).append(policy)
    subject = _endpoint(vector["profiles"], direction)
    peer = Endpoint(EndpointType.NETWORK, "pub", ip="203.0.113.7")
    egress = direction == "egress"
    flow = Flow(
        start_time=0,
        end_time=300,
        source=subject if egress else peer,
        dest=peer if egress else subject,
        proto="tcp",
        reporter=Reporter.SOURCE if egress else Reporter.DESTINATION,
        action=FlowAction.ALLOW,
    )
    return PolicyEngine(resources, unavailable=unavailable), flow


def _hit_matches(hit: PolicyHit, expected: Mapping[str, Any]) -> bool:
    if (hit.tier, hit.action, hit.rule_index) != (expected["tier"], expected["action"], expected["rule_index"]):
        return False
    name = expected.get("name")
    if name is None:
        return True
    if hit.kind == "pro":
        return bool(hit.name == name)
    return hit_policy_name(hit) in (name, f"{hit.tier}.{name}")


def _check(vector: Mapping[str, Any]) -> str | None:
    """None when the vector passes, else what went wrong."""
    expect = vector["expect"]
    engine, flow = _build(vector)
    try:
        verdict: Verdict | None = engine.evaluate(flow)
    except PolicyUnavailableError:
        verdict = None
    views = {"enforced_only": "action", "staged_as_enforced": "staged_action"}
    for view, attribute in views.items():
        if view not in expect:
            continue
        got = "error" if verdict is None else getattr(verdict, attribute)
        if got != expect[view]:
            return f"{view}: expected {expect[view]!r}, got {got!r}"
    if "trace" in expect and verdict is not None:
        wanted = expect["trace"]
        hits = verdict.hits
        if len(hits) != len(wanted) or not all(_hit_matches(h, w) for h, w in zip(hits, wanted, strict=True)):
            return f"trace: expected {wanted}, got {list(verdict.trace)}"
    return None


def run(data: dict[str, object]) -> tuple[int, list[str]]:
    """Check every vector; return the number passed and one message per failure."""
    vectors = data.get("vectors", [])
    if not isinstance(vectors, list):
        raise TypeError("calico-tier-evaluation.json: 'vectors' must be a list")
    passed = 0
    failures: list[str] = []
    for position, vector in enumerate(vectors):
        label = (
            f"vectors[{position}] {vector.get('name', '?')!r}" if isinstance(vector, dict) else f"vectors[{position}]"
        )
        try:
            problem = _check(vector)
        except (KeyError, TypeError, ValueError) as error:
            problem = f"malformed or unsupported vector ({type(error).__name__}: {error})"
        if problem is None:
            passed += 1
        else:
            failures.append(f"{label}: {problem}")
    return passed, failures
