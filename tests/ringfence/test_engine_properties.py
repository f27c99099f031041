"""Engine invariants over generated policies and flows (hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine_support import ALL_TYPES, flow, gnp, namespace, net, np, pod, ports, rule, tier

from ringfence.engine import PolicyEngine, Verdict
from ringfence.flows.record import Flow
from ringfence.model import EntityRule, PolicyType, Resource

SELECTORS = ["", "all()", "app == 'web'", "env != 'prod'", "has(app)", "app in {'db', 'api'}", "!has(env)"]
NAMESPACE_SELECTORS = [None, "all()", "global()", "team == 'blue'", "projectcalico.org/name == 'blog'"]
NAMESPACES = ["shop", "blog"]
BASE: list[Resource] = [
    namespace("shop", team="blue"),
    namespace("blog", team="green"),
    tier("t1", 10, "Pass"),
    tier("t2", 20, "Deny"),
]

entities = st.builds(
    lambda selector, namespace_selector, nets, port_list: EntityRule(
        selector=selector, namespace_selector=namespace_selector, nets=nets, ports=port_list
    ),
    st.sampled_from([None, *SELECTORS[1:]]),
    st.sampled_from(NAMESPACE_SELECTORS),
    st.sampled_from([(), ("10.0.0.0/8",), ("198.51.100.0/24", "203.0.113.0/24")]),
    st.sampled_from([(), ports(80), ports((8000, 8100), 443)]),
)


@st.composite
def rules(draw: st.DrawFn) -> Any:
    destination = draw(entities)
    protocol = "TCP" if destination.ports else draw(st.sampled_from([None, "TCP", "UDP"]))
    return rule(
        draw(st.sampled_from(["Allow", "Deny", "Pass", "Log"])),
        protocol=protocol,
        source=draw(st.sampled_from([EntityRule(), EntityRule(selector="env == 'prod'")])),
        destination=destination,
    )


@st.composite
def policies(draw: st.DrawFn, *, staged: bool = False) -> Resource:
    fields: dict[str, Any] = {
        "tier_name": draw(st.sampled_from(["default", "t1", "t2"])),
        "order": draw(st.sampled_from([None, 1.0, 5.0, 5.0, 10.0])),
        "selector": draw(st.sampled_from(SELECTORS)),
        "ingress": draw(st.lists(rules(), max_size=3)),
        "egress": draw(st.lists(rules(), max_size=3)),
        "types": draw(st.sampled_from([ALL_TYPES, (PolicyType.INGRESS,), (PolicyType.EGRESS,)])),
    }
    name = f"{fields['tier_name']}.p{draw(st.integers(0, 4))}"
    staged_action = draw(st.sampled_from(["Set", "Delete", "Learn", "Ignore"])) if staged else None
    if draw(st.booleans()):
        return np(name, draw(st.sampled_from(NAMESPACES)), staged=staged_action, **fields)
    fields["namespace_selector"] = draw(st.sampled_from(NAMESPACE_SELECTORS))
    return gnp(name, staged=staged_action, **fields)


pods = st.builds(
    lambda ns, app, env, ip: pod(ns, {**({"app": app} if app else {}), **({"env": env} if env else {})}, ip=ip),
    st.sampled_from(NAMESPACES),
    st.sampled_from([None, "web", "db", "api"]),
    st.sampled_from([None, "prod", "dev"]),
    st.sampled_from([None, "10.1.0.4", "10.2.0.9"]),
)
externals = st.builds(
    lambda ip, aggregate: net(ip, name_aggr=aggregate),
    st.sampled_from([None, "198.51.100.7", "203.0.113.1", "10.9.0.1"]),
    st.sampled_from(["pub", "pvt"]),
)


@st.composite
def flows(draw: st.DrawFn) -> Flow:
    subject = draw(pods)
    peer = draw(st.one_of(pods, externals))
    port = draw(st.sampled_from([None, 80, 443, 8080]))
    proto = draw(st.sampled_from(["tcp", "udp"]))
    if draw(st.booleans()):
        dest = peer.__class__(peer.type, peer.name_aggr, peer.namespace, None, peer.labels, peer.ip, port)
        return flow(subject, dest, reporter="src", proto=proto)
    dest = subject.__class__(subject.type, subject.name_aggr, subject.namespace, None, subject.labels, subject.ip, port)
    return flow(peer, dest, reporter="dst", proto=proto)


def views(verdict: Verdict) -> tuple[object, ...]:
    return (verdict.action, verdict.trace, verdict.staged_action, verdict.staged_trace)


@settings(max_examples=150, deadline=None)
@given(st.lists(policies(), max_size=6), st.lists(flows(), min_size=1, max_size=8))
def test_batch_equals_one_by_one(generated: list[Resource], records: list[Flow]) -> None:
    resources = BASE + generated
    batch = PolicyEngine(resources).evaluate_many(records)
    single = [PolicyEngine(resources).evaluate(record) for record in records]
    assert [views(v) for v in batch] == [views(v) for v in single]


@settings(max_examples=150, deadline=None)
@given(st.lists(policies(), max_size=6), st.lists(policies(staged=True), min_size=1, max_size=4), flows())
def test_staged_policies_never_change_the_enforced_verdict(
    enforced: list[Resource], staged: list[Resource], record: Flow
) -> None:
    without = PolicyEngine(BASE + enforced).evaluate(record)
    with_staged = PolicyEngine(BASE + enforced + staged).evaluate(record)
    assert (with_staged.action, with_staged.trace) == (without.action, without.trace)
    assert (without.staged_action, without.staged_trace) == (without.action, without.trace)


@settings(max_examples=100, deadline=None)
@given(st.lists(policies(), max_size=6), flows(), st.randoms(use_true_random=False))
def test_resource_order_does_not_matter(generated: list[Resource], record: Flow, rng: Any) -> None:
    resources = BASE + generated
    shuffled = list(resources)
    rng.shuffle(shuffled)
    assert views(PolicyEngine(resources).evaluate(record)) == views(PolicyEngine(shuffled).evaluate(record))


@settings(max_examples=100, deadline=None)
@given(st.lists(policies(), max_size=6), st.lists(flows(), min_size=1, max_size=6))
def test_caches_do_not_change_verdicts(generated: list[Resource], records: list[Flow]) -> None:
    engine = PolicyEngine(BASE + generated)
    first = [views(v) for v in engine.evaluate_many(records)]
    assert [views(v) for v in engine.evaluate_many(reversed(records))] == first[::-1]
    engine.clear_caches()
    assert [views(engine.evaluate(record)) for record in records] == first


@settings(max_examples=150, deadline=None)
@given(st.lists(policies(), max_size=6), flows())
def test_records_with_every_fact_are_never_uncertain(generated: list[Resource], record: Flow) -> None:
    complete = record.source.ip is not None and record.dest.ip is not None and record.dest.port is not None
    verdict = PolicyEngine(BASE + generated).evaluate(record)
    if complete:
        assert verdict.action != "uncertain"


@settings(max_examples=100, deadline=None)
@given(st.lists(policies(), max_size=6), flows())
def test_an_allow_all_first_tier_allows_everything(generated: list[Resource], record: Flow) -> None:
    first = [
        tier("first", 1, "Deny"),
        gnp("first.open", tier_name="first", types=ALL_TYPES, ingress=[rule()], egress=[rule()]),
    ]
    verdict = PolicyEngine(BASE + generated + first).evaluate(record)
    assert (verdict.action, verdict.trace[0].split("|")[2]) == ("allow", "first.open")
