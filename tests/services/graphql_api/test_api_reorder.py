"""reorderPolicies: several policies of a tier put in order in one atomic, audited change."""

from __future__ import annotations

import pytest
from api_manifests import SECURITY_POLICY, TIERS

REORDER = """mutation($t: String!, $o: [PolicyRef!]!, $s: Float, $st: Float! = 100) {
  reorderPolicies(tier: $t, order: $o, start: $s, step: $st) { name order resourceVersion } }"""
NAMES_IN_TIER = "query($t: String) { policies(tier: $t) { name order } }"


def ordered_policy(name: str, order: float | None, namespace: str = "storefront") -> str:
    order_line = "" if order is None else f"\n  order: {order}"
    return f"""
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  tier: default{order_line}
  selector: app == '{name}'
  ingress:
  - action: Allow
---"""


def ref(name: str, **extra: str) -> dict[str, str]:
    return {"kind": "NetworkPolicy", "name": name, "namespace": "storefront", **extra}


async def names_in_default(api) -> list[str]:
    return [p["name"] for p in (await api.data(NAMES_IN_TIER, {"t": "default"}))["policies"]]


async def test_listed_policies_exchange_their_orders_and_the_others_keep_their_places(api):
    await api.apply("".join(ordered_policy(n, o) for n, o in [("a", 100), ("b", 200), ("c", 300), ("d", 150)]))
    before = {p["name"]: p for p in (await api.data(NAMES_IN_TIER, {"t": "default"}))["policies"]}
    result = (await api.data(REORDER, {"t": "default", "o": [ref("c"), ref("a")]}, role="developer"))["reorderPolicies"]
    assert [(p["name"], p["order"]) for p in result] == [("default.c", 100), ("default.a", 300)]
    assert await names_in_default(api) == ["default.c", "default.d", "default.b", "default.a"]
    rows = await api.fetch("SELECT name FROM audit_log WHERE action = 'reorder' ORDER BY name")
    assert [row["name"] for row in rows] == ["default.a", "default.c"]
    after = {p["name"]: p for p in (await api.data(NAMES_IN_TIER, {"t": "default"}))["policies"]}
    assert after["default.b"] == before["default.b"]


async def test_start_and_step_number_policies_that_have_no_order(api):
    await api.apply("".join(ordered_policy(n, None) for n in ("x", "y", "z")))
    refused = await api.error(REORDER, {"t": "default", "o": [ref("z"), ref("x"), ref("y")]})
    assert refused["extensions"]["code"] == "BAD_USER_INPUT"
    assert refused["extensions"]["field"] == "start"
    variables = {"t": "default", "o": [ref("z"), ref("x"), ref("y")], "s": 10, "st": 5}
    result = (await api.data(REORDER, variables))["reorderPolicies"]
    assert [(p["name"], p["order"]) for p in result] == [("default.z", 10), ("default.x", 15), ("default.y", 20)]
    assert await names_in_default(api) == ["default.z", "default.x", "default.y"]


async def test_an_already_ordered_list_changes_nothing(api):
    created = {r["name"]: r for r in await api.apply(ordered_policy("a", 1) + ordered_policy("b", 2))}
    result = (await api.data(REORDER, {"t": "default", "o": [ref("a"), ref("b")]}))["reorderPolicies"]
    assert {p["name"]: p["resourceVersion"] for p in result} == {
        r["name"]: r["resourceVersion"] for r in created.values()
    }
    assert await api.fetch("SELECT 1 FROM audit_log WHERE action = 'reorder'") == []


@pytest.mark.parametrize(
    ("tier", "refs", "code", "field"),
    [
        ("security", [ref("a")], "BAD_USER_INPUT", "order[0]"),  # a is in tier default
        ("default", [ref("a"), ref("a")], "BAD_USER_INPUT", "order[1]"),
        ("default", [ref("a"), ref("missing")], "NOT_FOUND", None),
        ("default", [], "BAD_USER_INPUT", "order"),
        ("default", [{"kind": "KubernetesNetworkPolicy", "name": "k", "namespace": "storefront"}], "NOT_FOUND", None),
        ("default", [ref("a", resourceVersion="v1")], "BAD_USER_INPUT", "order[0].resourceVersion"),
    ],
)
async def test_a_bad_reorder_is_refused_and_changes_nothing(api, tier, refs, code, field):
    await api.apply(TIERS + "---" + ordered_policy("a", 100) + ordered_policy("b", 200))
    error = await api.error(REORDER, {"t": tier, "o": refs})
    assert error["extensions"]["code"] == code
    if field is not None:
        assert error["extensions"]["field"] == field
    assert await names_in_default(api) == ["default.a", "default.b"]


async def test_a_stale_version_refuses_the_whole_reorder(api):
    created = {r["name"]: r for r in await api.apply(ordered_policy("a", 100) + ordered_policy("b", 200))}
    await api.apply(ordered_policy("b", 200).replace("app == 'b'", "app == 'bee'"))
    stale = [ref("b", resourceVersion=created["default.b"]["resourceVersion"]), ref("a")]
    error = await api.error(REORDER, {"t": "default", "o": stale})
    assert error["extensions"]["code"] == "CONFLICT"
    assert await names_in_default(api) == ["default.a", "default.b"]


async def test_reordering_a_tier_the_caller_may_not_write_is_forbidden(api):
    await api.apply(TIERS + "---" + SECURITY_POLICY + "---" + SECURITY_POLICY.replace("known-bad-actors", "second"))
    refs = [
        {"kind": "GlobalNetworkPolicy", "name": "security.second"},
        {"kind": "GlobalNetworkPolicy", "name": "security.known-bad-actors"},
    ]
    error = await api.error(REORDER, {"t": "security", "o": refs, "s": 1, "st": 1}, role="developer")
    assert error["extensions"]["code"] == "FORBIDDEN"
    allowed = await api.data(REORDER, {"t": "security", "o": refs, "s": 1, "st": 1}, role="tier-admin")
    assert [p["name"] for p in allowed["reorderPolicies"]] == ["security.second", "security.known-bad-actors"]
