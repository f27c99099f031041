"""Policy statistics by evaluation: counts per view, policy, rule and action, and the rows a change rewrites."""

from __future__ import annotations

import pytest

from ringfence.engine import PolicyEngine
from ringfence.flows.hits import parse_hits
from ringfence.flows.record import Endpoint, EndpointType, Flow, FlowAction, Reporter, label_pairs
from ringfence.manifests import load_manifests
from ringfence.stats import EvaluatedFlow, HitCounts, HitKey, count_hits, diff_counts


def flow(app: str = "web", *, flows: int = 2, packets: int = 10, byte_count: int = 1000) -> Flow:
    source = Endpoint(EndpointType.WORKLOAD, f"{app}-6cfbdd589f-*", "shop", labels=label_pairs({"app": app}))
    dest = Endpoint(EndpointType.NETWORK, "pub", port=443)
    return Flow(
        0,
        300,
        source,
        dest,
        "tcp",
        Reporter.SOURCE,
        FlowAction.ALLOW,
        num_flows=flows,
        packets_in=packets // 2,
        packets_out=packets - packets // 2,
        bytes_in=byte_count // 2,
        bytes_out=byte_count - byte_count // 2,
    )


def evaluated(item: Flow, enforced: list[str], staged: list[str], records: int = 1) -> EvaluatedFlow:
    return EvaluatedFlow(item, records, parse_hits(enforced), parse_hits(staged))


PASS = "0|security|security.screen|pass|-1"
ALLOW_WEB = "1|default|shop/default.web|allow|0"
STAGED_ALLOW = "1|default|shop/staged:default.web-next|allow|2"
STAGED_DENY = "1|default|shop/staged:default.web-next|deny|-1"


def key(spec: str) -> HitKey:
    """``"<enforced|staged> tier kind namespace|- name rule action"`` as a key."""
    view, tier, kind, namespace, name, rule, action = spec.split()
    return HitKey(view == "staged", tier, kind, None if namespace == "-" else namespace, name, int(rule), action)


def test_each_hit_of_each_view_counts_the_flow():
    totals = count_hits([evaluated(flow(), [PASS, ALLOW_WEB], [PASS, STAGED_ALLOW], records=3)])
    counts = HitCounts(records=3, flows=2, packets=10, bytes=1000)
    assert totals == {
        key("enforced security gnp - security.screen -1 pass"): counts,
        key("enforced default np shop default.web 0 allow"): counts,
        key("staged security gnp - security.screen -1 pass"): counts,
        key("staged default snp shop default.web-next 2 allow"): counts,
    }


def test_counts_add_up_per_rule_and_action():
    totals = count_hits(
        [
            evaluated(flow(flows=1, packets=2, byte_count=10), [], [STAGED_ALLOW]),
            evaluated(flow(flows=4, packets=8, byte_count=40), [], [STAGED_ALLOW], records=2),
            evaluated(flow(flows=5, packets=1, byte_count=7), [], [STAGED_DENY]),
        ]
    )
    assert totals[key("staged default snp shop default.web-next 2 allow")] == HitCounts(3, 5, 10, 50)
    assert totals[key("staged default snp shop default.web-next -1 deny")] == HitCounts(1, 5, 1, 7)


def test_engine_traces_are_counted_like_recorded_ones():
    resources = load_manifests(
        """
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: web-next, namespace: shop}
spec:
  selector: app == 'web'
  types: [Egress]
  egress:
  - action: Allow
    protocol: TCP
    destination: {ports: [443]}
"""
    )
    item = flow()
    verdict = PolicyEngine(resources).evaluate(item)
    totals = count_hits([EvaluatedFlow(item, 1, verdict.hits, verdict.staged_hits)])
    assert key("staged default snp shop default.web-next 0 allow") in totals
    assert not [k for k in totals if not k.staged_view and k.kind == "snp"]


@pytest.mark.parametrize(
    ("old", "new", "upserts", "deletes"),
    [
        ({}, {"a": 1}, {"a": 1}, []),
        ({"a": 1}, {"a": 1}, {}, []),
        ({"a": 1}, {"a": 2}, {"a": 2}, []),
        ({"a": 1, "b": 1}, {"b": 1}, {}, ["a"]),
        ({"a": 1, "b": 2}, {"b": 3, "c": 1}, {"b": 3, "c": 1}, ["a"]),
    ],
)
def test_only_changed_rows_are_written(old, new, upserts, deletes):
    def keyed(rows):
        return {key(f"staged default snp shop {name} 0 allow"): HitCounts(n, n, n, n) for name, n in rows.items()}

    written, removed = diff_counts(keyed(old), keyed(new))
    assert written == keyed(upserts)
    assert [k.name for k in removed] == deletes
