"""Properties of recommendations over random traffic, checked through the engine."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ringfence.engine import PolicyEngine
from ringfence.flows.record import Endpoint, EndpointType, Flow, FlowAction, Reporter, label_pairs
from ringfence.manifests import dump_manifests, load_manifests
from ringfence.recommend import Scope, recommend

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
START = int(NOW.timestamp()) - 3600
NAMESPACE = "payments"
SCOPE = Scope(NAMESPACE, "ledger-6cfbdd589f-*")
NAMESPACES = """
apiVersion: v1
kind: Namespace
metadata: {name: payments}
---
apiVersion: v1
kind: Namespace
metadata: {name: billing}
---
apiVersion: v1
kind: Namespace
metadata: {name: kube-system}
---
apiVersion: v1
kind: Namespace
metadata: {name: quarantine}
"""


def pod(app: str, namespace: str = NAMESPACE) -> Endpoint:
    labels = {"app": app, "pod-template-hash": "6cfbdd589f", "tier": "backend" if app < "m" else "frontend"}
    return Endpoint(EndpointType.WORKLOAD, f"{app}-6cfbdd589f-*", namespace, labels=label_pairs(labels))


LEDGER = pod("ledger")
APPS = ("api", "cache", "db", "queue", "web")

pods = st.builds(pod, st.sampled_from(APPS), st.sampled_from((NAMESPACE, "billing", "kube-system")))
private = st.builds(
    lambda a, b: Endpoint(EndpointType.NETWORK, "pvt", ip=f"10.{a}.{b}.7"), st.integers(0, 255), st.integers(0, 255)
)
public = st.just(Endpoint(EndpointType.NETWORK, "pub"))
protocols = st.sampled_from(("tcp", "udp", "icmp"))
ports = st.sampled_from((53, 80, 443, 5432, 5433, 6379, 8080, 8081, 9000))


@st.composite
def scope_flows(draw: st.DrawFn) -> Flow:
    """An allowed flow of the ledger workload, egress or ingress."""
    egress = draw(st.booleans())
    peer = draw(st.one_of(pods, private, public))
    proto = draw(protocols)
    port = None if proto == "icmp" else draw(ports)
    domains: tuple[str, ...] = ()
    if egress and peer.name_aggr == "pub" and draw(st.booleans()):
        domains = (draw(st.sampled_from(("api.stripe.com", "s3.amazonaws.com", "github.com"))),)
    source, dest = (LEDGER, peer) if egress else (peer, LEDGER)
    return Flow(
        START,
        START + 300,
        source,
        Endpoint(dest.type, dest.name_aggr, dest.namespace, labels=dest.labels, ip=dest.ip, port=port),
        proto,
        Reporter.SOURCE if egress else Reporter.DESTINATION,
        FlowAction.ALLOW,
        dest_domains=domains,
    )


def engine_for(flows: list[Flow]) -> PolicyEngine:
    policy = recommend(flows, SCOPE, NOW).policy
    return PolicyEngine(load_manifests(NAMESPACES) + load_manifests(dump_manifests([policy])))


@settings(max_examples=150, deadline=None)
@given(st.lists(scope_flows(), min_size=1, max_size=25))
def test_every_observed_flow_is_allowed_by_the_staged_view(flows):
    engine = engine_for(flows)
    for item in flows:
        assert engine.evaluate(item).staged_action == "allow", item


@settings(max_examples=150, deadline=None)
@given(
    st.lists(scope_flows(), min_size=1, max_size=25),
    st.sampled_from((*APPS, "stranger")),
    st.booleans(),
    ports,
)
def test_a_peer_never_seen_is_denied(flows, app, egress, port):
    # Public traffic is allowed by protocol and port alone: any peer on such a port is let through.
    reporter = Reporter.SOURCE if egress else Reporter.DESTINATION
    assume(
        not any(
            f.reporter is reporter
            and f.proto == "tcp"
            and f.dest.port == port
            and "pub" in (f.source.name_aggr, f.dest.name_aggr)
            for f in flows
        )
    )
    stranger = pod(app, "quarantine")
    source, dest = (LEDGER, stranger) if egress else (stranger, LEDGER)
    unseen = Flow(
        START,
        START + 300,
        source,
        Endpoint(dest.type, dest.name_aggr, dest.namespace, labels=dest.labels, port=port),
        "tcp",
        Reporter.SOURCE if egress else Reporter.DESTINATION,
        FlowAction.ALLOW,
    )
    assert engine_for(flows).evaluate(unseen).staged_action == "deny"


@settings(max_examples=100, deadline=None)
@given(st.lists(scope_flows(), min_size=1, max_size=25))
def test_the_policy_does_not_depend_on_the_order_of_flows(flows):
    forward = recommend(flows, SCOPE, NOW).policy
    backward = recommend(list(reversed(flows)), SCOPE, NOW).policy
    assert dump_manifests([forward]) == dump_manifests([backward])
