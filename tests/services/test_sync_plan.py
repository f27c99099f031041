"""The three-way plan: cluster, Ringfence and their last common state decide each resource's action."""

from __future__ import annotations

import pytest

from ringfence.model import ResourceKey
from services.sync.documents import ClusterObject
from services.sync.kinds import calico_kinds
from services.sync.plan import Action, RingfenceSide, decide, plan_sync, render_plan

A = {"kind": "Tier", "metadata": {"name": "t"}, "spec": {"order": 1}}
B = {"kind": "Tier", "metadata": {"name": "t"}, "spec": {"order": 2}}
C = {"kind": "Tier", "metadata": {"name": "t"}, "spec": {"order": 3}}


@pytest.mark.parametrize(
    ("cluster", "ringfence", "base", "writable", "expected"),
    [
        # equal on both sides
        (A, A, A, True, None),
        (A, A, None, True, Action.BASELINE),
        (A, A, B, True, Action.BASELINE),
        (None, None, A, True, None),
        (None, None, None, True, None),
        # only the cluster changed
        (B, A, A, True, Action.IMPORT),
        (A, None, None, True, Action.IMPORT),
        (None, A, A, True, Action.REMOVE),
        # only Ringfence changed
        (A, B, A, True, Action.APPLY),
        (None, A, None, True, Action.APPLY),
        (A, None, A, True, Action.DELETE),
        # ... but writing back is not allowed
        (A, B, A, False, Action.HOLD),
        (None, A, None, False, Action.HOLD),
        (A, None, A, False, Action.HOLD),
        # both changed, differently: the cluster wins, whether or not writing is allowed
        (B, C, A, True, Action.CONFLICT),
        (B, C, A, False, Action.CONFLICT),
        (None, B, A, True, Action.CONFLICT),
        (B, None, A, True, Action.CONFLICT),
        (A, B, None, True, Action.CONFLICT),
    ],
)
def test_decide(cluster, ringfence, base, writable, expected):
    decision = decide(cluster, ringfence, base, writable=writable)
    assert (None if decision is None else decision.action) == expected


def test_a_change_to_the_same_document_on_both_sides_is_no_conflict():
    decision = decide(B, B, A, writable=True)
    assert decision is not None
    assert decision.action is Action.BASELINE


def test_conflict_reasons_say_the_cluster_wins():
    for cluster, ringfence in ((B, C), (None, B), (B, None)):
        decision = decide(cluster, ringfence, A, writable=True)
        assert decision is not None
        assert "cluster" in decision.reason
        assert "win" in decision.reason


TIERS, _, _, GNP, NP, *_ = calico_kinds("projectcalico.org/v3")


def _cluster(kind, key, document):
    return ClusterObject(kind, key, document, "7", key.namespace, key.name)


def _doc(kind, name, namespace=None, order=1):
    metadata = {"name": name} | ({"namespace": namespace} if namespace else {})
    return {"kind": kind, "metadata": metadata, "spec": {"order": order}}


def test_plan_orders_store_changes_first_then_deletions_children_first_then_creations_parents_first():
    tier = ResourceKey("Tier", None, "security")
    policy = ResourceKey("NetworkPolicy", "storefront", "security.p")
    old_tier = ResourceKey("Tier", None, "old")
    old_policy = ResourceKey("NetworkPolicy", "storefront", "old.p")
    imported_policy = ResourceKey("GlobalNetworkPolicy", None, "default.g")
    imported_tier = ResourceKey("Tier", None, "imported")
    cluster = {
        old_tier: _cluster(TIERS, old_tier, _doc("Tier", "old")),
        old_policy: _cluster(NP, old_policy, _doc("NetworkPolicy", "old.p", "storefront")),
        imported_policy: _cluster(GNP, imported_policy, _doc("GlobalNetworkPolicy", "default.g")),
        imported_tier: _cluster(TIERS, imported_tier, _doc("Tier", "imported")),
    }
    ringfence = {
        policy: RingfenceSide(_doc("NetworkPolicy", "security.p", "storefront"), 3),
        tier: RingfenceSide(_doc("Tier", "security"), 2),
    }
    bases = {old_tier: cluster[old_tier].document, old_policy: cluster[old_policy].document}
    plan = plan_sync(cluster, ringfence, bases, writable_kinds=frozenset({"Tier", "NetworkPolicy"}), read_write=True)
    assert [(item.action, item.key) for item in plan.items] == [
        (Action.IMPORT, imported_tier),
        (Action.IMPORT, imported_policy),
        (Action.DELETE, old_policy),
        (Action.DELETE, old_tier),
        (Action.APPLY, tier),
        (Action.APPLY, policy),
    ]


def test_read_only_plans_hold_ringfence_changes_and_unwritable_kinds_are_held_too():
    key = ResourceKey("Tier", None, "security")
    ringfence = {key: RingfenceSide(_doc("Tier", "security"), 2)}
    for writable_kinds, read_write in ((frozenset({"Tier"}), False), (frozenset(), True)):
        plan = plan_sync({}, ringfence, {}, writable_kinds=writable_kinds, read_write=read_write)
        assert [item.action for item in plan.items] == [Action.HOLD]


def test_plan_limited_to_keys():
    a, b = ResourceKey("Tier", None, "a"), ResourceKey("Tier", None, "b")
    ringfence = {a: RingfenceSide(_doc("Tier", "a"), 1), b: RingfenceSide(_doc("Tier", "b"), 1)}
    plan = plan_sync({}, ringfence, {}, writable_kinds=frozenset({"Tier"}), read_write=True, keys=[b])
    assert [item.key for item in plan.items] == [b]


def test_rendered_plan_lists_actions_and_leaves_baselines_out():
    same = ResourceKey("Tier", None, "same")
    new = ResourceKey("Tier", None, "new")
    cluster = {same: _cluster(TIERS, same, _doc("Tier", "same")), new: _cluster(TIERS, new, _doc("Tier", "new"))}
    ringfence = {same: RingfenceSide(_doc("Tier", "same"), 1)}
    plan = plan_sync(cluster, ringfence, {}, writable_kinds=frozenset(), read_write=False)
    text = render_plan(plan, header="sync: ")
    assert text.splitlines() == ["sync: 1 import (1 in sync)", "  import    Tier new  new in the cluster"]
    assert not plan.empty


def test_rendered_empty_plan():
    plan = plan_sync({}, {}, {}, writable_kinds=frozenset(), read_write=True)
    assert plan.empty
    assert render_plan(plan) == "nothing to do: the cluster and Ringfence agree\n"
