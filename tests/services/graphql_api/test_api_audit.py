"""Every change goes to the audit log (who, when, what, before and after), newest first, page by page."""

from __future__ import annotations

from datetime import UTC, datetime

import yaml as pyyaml
from api_manifests import BACKEND, STAGED_FRONTEND, TIERS

AUDIT = """query($first: Int, $after: String, $kind: String, $actor: String, $action: String) {
  auditLog(first: $first, after: $after, kind: $kind, actor: $actor, action: $action) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { cursor node { id at actor action kind namespace name before after } } } }"""


async def entries(api, **variables):
    variables.setdefault("first", 50)
    return (await api.data(AUDIT, variables))["auditLog"]


async def test_create_update_and_delete_are_audited_with_before_and_after(api):
    started = datetime.now(UTC)
    (created,) = await api.apply(BACKEND, role="developer")
    (updated,) = await api.apply(BACKEND.replace("order: 100", "order: 7"), role="developer")
    await api.data('mutation { deleteResource(kind: "NetworkPolicy", name: "backend", namespace: "storefront") }')
    log = await entries(api, kind="NetworkPolicy")
    nodes = [edge["node"] for edge in log["edges"]]
    assert [(n["action"], n["actor"]) for n in nodes] == [
        ("delete", "admin-user"),
        ("update", "developer-user"),
        ("create", "developer-user"),
    ]
    assert all(
        (n["kind"], n["namespace"], n["name"]) == ("NetworkPolicy", "storefront", "default.backend") for n in nodes
    )
    delete, update, create = nodes
    assert create["before"] is None
    assert create["after"]["metadata"]["resourceVersion"] == created["resourceVersion"]
    assert update["before"]["spec"]["order"] == 100
    assert update["after"]["spec"]["order"] == 7
    assert update["after"]["metadata"]["resourceVersion"] == updated["resourceVersion"]
    assert delete["before"]["spec"]["order"] == 7
    assert delete["after"] is None
    for node in nodes:
        assert datetime.fromisoformat(node["at"]) >= started.replace(microsecond=0)
    assert log["totalCount"] == 3


async def test_a_no_op_apply_and_a_refused_change_leave_no_entry(api):
    await api.apply(TIERS)
    before = (await entries(api))["totalCount"]
    await api.apply(TIERS)
    await api.post("mutation($y: String!) { applyManifests(yaml: $y) { name } }", {"y": BACKEND}, role="viewer")
    stale = TIERS.replace("metadata: {name: security}", "metadata: {name: security, resourceVersion: '1'}")
    await api.post("mutation($y: String!) { applyManifests(yaml: $y) { name } }", {"y": stale})
    assert (await entries(api))["totalCount"] == before


async def test_promotion_is_audited_on_both_policies(api):
    await api.apply(STAGED_FRONTEND)
    await api.data(
        """mutation { promoteStagedPolicy(kind: "StagedNetworkPolicy", name: "frontend", namespace: "storefront") {
          name } }"""
    )
    nodes = [edge["node"] for edge in (await entries(api, action="promote"))["edges"]]
    assert {(n["kind"], n["before"] is None, n["after"] is None) for n in nodes} == {
        ("NetworkPolicy", True, False),
        ("StagedNetworkPolicy", False, True),
    }


async def test_jobs_and_tokens_are_audited(api, task_queue):
    job = (await api.data('mutation { recommendPolicies(namespace: "storefront", workload: "backend-*") { id } }'))[
        "recommendPolicies"
    ]
    nodes = [edge["node"] for edge in (await entries(api, kind="Job"))["edges"]]
    assert [(n["action"], n["name"]) for n in nodes] == [("job.create", job["id"])]
    assert nodes[0]["after"]["params"]["workload"] == "backend-*"
    tokens = [edge["node"] for edge in (await entries(api, action="token.create"))["edges"]]
    assert sorted(n["name"] for n in tokens) == ["admin-user", "developer-user", "tier-admin-user", "viewer-user"]
    secrets = set(api.tokens.values())
    assert not any(secret in pyyaml.safe_dump(n) for n in tokens for secret in secrets)


async def test_the_log_pages_newest_first_with_cursors(api):
    for order in range(5):
        await api.apply(BACKEND.replace("order: 100", f"order: {order}"))
    everything = [edge["node"]["id"] for edge in (await entries(api))["edges"]]
    assert everything == sorted(everything, key=int, reverse=True)
    seen: list[str] = []
    after = None
    while True:
        page = (await api.data(AUDIT, {"first": 2, "after": after}))["auditLog"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        assert page["totalCount"] == len(everything)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
        assert after == page["edges"][-1]["cursor"]
    assert seen == everything


async def test_bad_pages_are_refused(api):
    for variables, field in (({"first": 501}, "first"), ({"first": -1}, "first"), ({"after": "bm9wZQ=="}, "after")):
        error = await api.error(AUDIT, variables)
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["extensions"]["field"] == field
