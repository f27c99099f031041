"""Change sets and verdict diffs for impact previews (calico.md section 5)."""

from __future__ import annotations

import pytest
from test_engine_support import flow, net, np, pod, rule

from ringfence.engine import PolicyEngine, apply_changes, diff_verdicts, summarize
from ringfence.engine.changes import ChangeSetError
from ringfence.model import (
    EntityRule,
    K8sPolicySpec,
    KubernetesNetworkPolicy,
    LabelSelector,
    NetworkPolicy,
    ObjectMeta,
    ResourceKey,
    StagedAction,
    StagedKubernetesNetworkPolicy,
    StagedNetworkPolicy,
    resource_key,
)

WEB = pod("shop", {"app": "web"}, ip="10.0.0.5")
DB = pod("shop", {"app": "db"}, ip="10.0.0.9", port=5432)
OUT = net("198.51.100.7", port=443)


def keys(resources: list) -> list[str]:
    return sorted(str(resource_key(r)) for r in resources)


def test_upserts_create_and_replace_deletes_remove() -> None:
    base = [np("default.a", "shop", egress=[rule("Allow")]), np("b", "shop", egress=[rule("Deny")])]
    replaced = np("default.a", "shop", egress=[rule("Deny")])
    result = apply_changes(
        base, upserts=[replaced, np("default.c", "blog")], deletes=[ResourceKey("NetworkPolicy", "shop", "b")]
    )
    assert keys(result) == ["NetworkPolicy blog/default.c", "NetworkPolicy shop/default.a"]
    assert replaced in result
    assert keys(base) == ["NetworkPolicy shop/default.a", "NetworkPolicy shop/default.b"]  # inputs untouched


@pytest.mark.parametrize("name", ["default.b", "b"])
def test_deletes_accept_plain_and_tier_qualified_names(name: str) -> None:
    base = [np("b", "shop")]
    assert apply_changes(base, deletes=[ResourceKey("NetworkPolicy", "shop", name)]) == []


def test_deleting_nothing_is_an_error() -> None:
    with pytest.raises(ChangeSetError, match="no such resource"):
        apply_changes([np("b", "shop")], deletes=[ResourceKey("NetworkPolicy", "blog", "b")])


@pytest.mark.parametrize("action", ["Set", "Learn"])
def test_staged_set_previews_enforcing_it(action: str) -> None:
    staged = np("default.web", "shop", staged=action, egress=[rule("Deny")])
    base = [np("default.web", "shop", egress=[rule("Allow")]), staged]
    result = apply_changes(base, upserts=[staged])
    assert keys(result) == ["NetworkPolicy shop/default.web"]
    (enforced,) = result
    assert isinstance(enforced, NetworkPolicy)
    assert enforced.spec == staged.spec


def test_staged_delete_previews_deleting_its_twin() -> None:
    staged = np("default.web", "shop", staged="Delete")
    assert apply_changes([np("web", "shop")], upserts=[staged]) == []


def test_staged_ignore_is_stored_as_staged() -> None:
    staged = np("default.web", "shop", staged="Ignore")
    result = apply_changes([], upserts=[staged])
    assert result == [staged]
    assert isinstance(result[0], StagedNetworkPolicy)


def test_staged_kubernetes_policy_becomes_a_kubernetes_policy() -> None:
    spec = K8sPolicySpec(pod_selector=LabelSelector({"app": "db"}))
    staged = StagedKubernetesNetworkPolicy(ObjectMeta("db", "shop"), spec, StagedAction.SET)
    (result,) = apply_changes([], upserts=[staged])
    assert isinstance(result, KubernetesNetworkPolicy)


def test_diff_reports_changed_flows_with_both_traces() -> None:
    before = PolicyEngine([np("default.web", "shop", selector="app == 'web'", egress=[rule("Allow")])])
    after = PolicyEngine(
        [np("default.web", "shop", selector="app == 'web'", egress=[rule("Deny", protocol="TCP"), rule("Allow")])]
    )
    records = [flow(WEB, OUT), flow(WEB, net("198.51.100.7", port=53), proto="udp")]
    changes = list(diff_verdicts(before, after, records))
    assert len(changes) == 1
    change = changes[0]
    assert (change.kind, change.before, change.after) == ("newly_denied", "allow", "deny")
    assert change.before_trace == ("0|default|shop/default.web|allow|0",)
    assert change.after_trace == ("0|default|shop/default.web|deny|0",)
    assert summarize(changes, examined=len(records)).newly_denied == 1


def test_uncertain_flows_are_their_own_class() -> None:
    before = PolicyEngine([])
    maybe_deny = rule("Deny", destination=EntityRule(nets=("52.0.0.0/8",)))
    after = PolicyEngine([np("default.web", "shop", egress=[maybe_deny, rule("Allow")])])
    aggregated = flow(WEB, net(name_aggr="pub", port=443))
    (change,) = diff_verdicts(before, after, [aggregated])
    assert (change.kind, change.before, change.after) == ("uncertain", "allow", "uncertain")
    assert list(diff_verdicts(after, after, [aggregated])) == []


@pytest.mark.parametrize(("db_ingress", "expected"), [("Allow", "newly_allowed"), ("Deny", None)])
def test_source_side_newly_allowed_checks_the_destination_side(db_ingress: str, expected: str | None) -> None:
    db_policy = np("default.db", "shop", selector="app == 'db'", ingress=[rule(db_ingress)])
    before = PolicyEngine([db_policy, np("default.web", "shop", selector="app == 'web'", egress=[rule("Deny")])])
    after = PolicyEngine([db_policy, np("default.web", "shop", selector="app == 'web'", egress=[rule("Allow")])])
    changes = list(diff_verdicts(before, after, [flow(WEB, DB)]))
    if expected is None:
        assert changes == []  # the destination still denies: the connection stays denied
    else:
        (change,) = changes
        assert change.kind == expected
        assert change.destination is not None
        assert change.destination.trace == ("0|default|shop/default.db|allow|0",)


def test_diff_compares_the_staged_view_on_request() -> None:
    engine = PolicyEngine([np("default.web", "shop", staged="Set", egress=[rule("Deny")])])
    empty = PolicyEngine([])
    assert list(diff_verdicts(empty, engine, [flow(WEB, OUT)])) == []
    (change,) = diff_verdicts(empty, engine, [flow(WEB, OUT)], view="staged")
    assert change.kind == "newly_denied"


def test_summary_counts_every_kind() -> None:
    before = PolicyEngine([np("default.web", "shop", egress=[rule("Allow", protocol="TCP")])])
    after = PolicyEngine([np("default.web", "shop", egress=[rule("Allow", protocol="UDP")])])
    records = [
        flow(WEB, OUT),
        flow(WEB, net("198.51.100.8", port=53), proto="udp"),
        flow(WEB, net("198.51.100.9"), proto="icmp"),
    ]
    summary = summarize(diff_verdicts(before, after, records), examined=len(records))
    assert (summary.examined, summary.changed, summary.newly_denied, summary.newly_allowed, summary.uncertain) == (
        3,
        2,
        1,
        1,
        0,
    )
