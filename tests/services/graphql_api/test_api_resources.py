"""applyManifests, deleteResource, history, revert, promotion, staging and ordering, through the real API."""

from __future__ import annotations

import pytest
import yaml as pyyaml
from api_manifests import BACKEND, NETWORK_SET, STAGED_FRONTEND, TIERS, TWILIO, namespaced_policy

from ringfence.manifests import load_manifests
from ringfence.model import resource_key
from ringfence.selector import SelectorError, parse_selector

APPLY = """mutation($y: String!, $d: Boolean) {
  applyManifests(yaml: $y, dryRun: $d) { kind name namespace resourceVersion yaml } }"""
DELETE = """mutation($k: String!, $n: String!, $ns: String, $v: String) {
  deleteResource(kind: $k, name: $n, namespace: $ns, resourceVersion: $v) }"""
RESOURCE = """query($k: String!, $n: String!, $ns: String) {
  resource(kind: $k, name: $n, namespace: $ns) { resourceVersion yaml } }"""


async def stored_keys(api):
    rows = await api.fetch("SELECT kind, namespace, name FROM resources ORDER BY 1, 2, 3")
    return [(row["kind"], row["namespace"], row["name"]) for row in rows]


async def test_apply_creates_every_resource_and_returns_its_version_and_yaml(api):
    text = TIERS + "---" + TWILIO + "---" + BACKEND
    applied = await api.apply(text)
    expected = [resource_key(r) for r in load_manifests(text)]
    assert [(a["kind"], a["namespace"], a["name"]) for a in applied] == [
        (k.kind, k.namespace, k.name) for k in expected
    ]
    versions = [int(a["resourceVersion"]) for a in applied]
    assert len(set(versions)) == len(versions)
    for item in applied:
        document = pyyaml.safe_load(item["yaml"])
        assert document["kind"] == item["kind"]
        assert document["metadata"]["resourceVersion"] == item["resourceVersion"]
    assert sorted(await stored_keys(api)) == sorted((k.kind, k.namespace or "", k.name) for k in expected)


async def test_reapplying_the_same_document_keeps_the_version(api):
    first = await api.apply(TIERS)
    second = await api.apply(TIERS)
    assert [a["resourceVersion"] for a in second] == [a["resourceVersion"] for a in first]
    history = await api.fetch("SELECT count(*) AS n FROM resource_versions")
    assert history[0]["n"] == 2


async def test_an_update_based_on_the_current_version_is_applied(api):
    (created,) = await api.apply(BACKEND)
    document = pyyaml.safe_load(created["yaml"])
    document["spec"]["order"] = 50
    (updated,) = await api.apply(pyyaml.safe_dump(document))
    assert int(updated["resourceVersion"]) > int(created["resourceVersion"])
    assert pyyaml.safe_load(updated["yaml"])["spec"]["order"] == 50


async def test_a_stale_version_is_refused_and_nothing_of_the_batch_is_applied(api):
    (created,) = await api.apply(BACKEND)
    stale = pyyaml.safe_load(created["yaml"])
    await api.apply(BACKEND.replace("order: 100", "order: 150"))  # someone else's update
    stale["spec"]["order"] = 1
    batch = NETWORK_SET + "---\n" + pyyaml.safe_dump(stale)
    error = await api.error(APPLY, {"y": batch})
    assert error["extensions"]["code"] == "CONFLICT"
    (conflict,) = error["extensions"]["conflicts"]
    assert conflict["name"] == "default.backend"
    assert conflict["expectedVersion"] == created["resourceVersion"]
    assert int(conflict["actualVersion"]) > int(created["resourceVersion"])
    assert ("NetworkSet", "storefront", "partners") not in await stored_keys(api)
    current = await api.data(RESOURCE, {"k": "NetworkPolicy", "n": "backend", "ns": "storefront"})
    assert pyyaml.safe_load(current["resource"]["yaml"])["spec"]["order"] == 150


async def test_a_version_on_a_document_that_does_not_exist_is_a_conflict(api):
    text = BACKEND.replace("namespace: storefront}", "namespace: storefront, resourceVersion: '7'}")
    error = await api.error(APPLY, {"y": text})
    assert error["extensions"]["code"] == "CONFLICT"
    assert error["extensions"]["conflicts"][0]["actualVersion"] is None
    assert await stored_keys(api) == []


async def test_invalid_manifests_are_refused_with_every_problem_and_selector_positions(api):
    text = (
        BACKEND.replace("selector: app == 'backend'", "selector: app == ")
        + "---"
        + NETWORK_SET.replace("198.51.100.0/24", "not-a-cidr")
    )
    error = await api.error(APPLY, {"y": text})
    assert error["extensions"]["code"] == "INVALID_MANIFEST"
    problems = error["extensions"]["errors"]
    by_document = {problem["document"]: problem for problem in problems}
    assert set(by_document) == {1, 2}
    assert by_document[1]["path"] == "spec.selector"
    with pytest.raises(SelectorError) as expected:
        parse_selector("app ==")  # the field as YAML reads it
    assert by_document[1]["position"] == expected.value.position
    assert by_document[2]["path"].startswith("spec.nets")
    assert "position" not in by_document[2]
    assert error["path"] == ["applyManifests"]
    assert await stored_keys(api) == []


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "no resource"),
        (namespaced_policy("x", "storefront", tier="nowhere"), "tier 'nowhere'"),
    ],
)
async def test_batches_that_cannot_be_applied_are_bad_input(api, text, fragment):
    error = await api.error(APPLY, {"y": text})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert fragment in error["message"]
    assert await stored_keys(api) == []


async def test_a_batch_naming_one_resource_twice_is_refused(api):
    error = await api.error(APPLY, {"y": BACKEND + "---" + BACKEND})
    assert error["extensions"]["code"] == "INVALID_MANIFEST"
    assert await stored_keys(api) == []


async def test_a_policy_may_name_a_tier_created_in_the_same_batch(api):
    applied = await api.apply(TIERS + "---" + TWILIO)
    assert [a["kind"] for a in applied] == ["Tier", "Tier", "GlobalNetworkSet", "GlobalNetworkPolicy"]


async def test_a_dry_run_checks_everything_and_stores_nothing(api):
    data = await api.data(APPLY, {"y": TIERS, "d": True})
    assert [item["name"] for item in data["applyManifests"]] == ["security", "platform"]
    assert await stored_keys(api) == []
    assert (await api.fetch("SELECT count(*) AS n FROM audit_log WHERE action <> 'token.create'"))[0]["n"] == 0


async def test_delete_removes_the_resource_and_keeps_its_history(api):
    (created,) = await api.apply(BACKEND)
    data = await api.data(DELETE, {"k": "NetworkPolicy", "n": "backend", "ns": "storefront"})
    assert data == {"deleteResource": True}
    assert await stored_keys(api) == []
    rows = await api.fetch("SELECT change, resource_version FROM resource_versions ORDER BY id")
    assert [row["change"] for row in rows] == ["create", "delete"]
    assert rows[1]["resource_version"] > int(created["resourceVersion"])


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({"k": "NetworkPolicy", "n": "missing", "ns": "storefront"}, "NOT_FOUND"),
        ({"k": "NetworkPolicy", "n": "backend", "ns": "elsewhere"}, "NOT_FOUND"),
        ({"k": "NetworkPolicy", "n": "backend", "ns": "storefront", "v": "1"}, "CONFLICT"),
        ({"k": "NetworkPolicy", "n": "backend", "ns": "storefront", "v": "x1"}, "BAD_USER_INPUT"),
    ],
)
async def test_delete_errors(api, variables, code):
    await api.apply(TIERS)  # versions 1 and 2: the policy's version is not 1
    await api.apply(BACKEND)
    error = await api.error(DELETE, variables)
    assert error["extensions"]["code"] == code
    assert ("NetworkPolicy", "storefront", "default.backend") in await stored_keys(api)


async def test_a_tier_holding_policies_cannot_be_deleted(api):
    await api.apply(TIERS + "---" + TWILIO)
    error = await api.error(DELETE, {"k": "Tier", "n": "platform"})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "still holds 1 policies" in error["message"]
    await api.data(DELETE, {"k": "GlobalNetworkPolicy", "n": "twilio-integration"})
    assert await api.data(DELETE, {"k": "Tier", "n": "platform"}) == {"deleteResource": True}


async def test_versions_list_the_history_and_revert_brings_one_back(api):
    (first,) = await api.apply(BACKEND)
    await api.apply(BACKEND.replace("order: 100", "order: 300"))
    query = """{ policy(kind: "NetworkPolicy", name: "backend", namespace: "storefront") {
      order versions { resourceVersion change changedBy document } } }"""
    policy = (await api.data(query))["policy"]
    assert policy["order"] == 300
    assert [v["change"] for v in policy["versions"]] == ["update", "create"]
    assert {v["changedBy"] for v in policy["versions"]} == {"admin-user"}
    assert policy["versions"][1]["resourceVersion"] == first["resourceVersion"]
    revert = """mutation($v: String!) { revertResource(kind: "NetworkPolicy", name: "default.backend",
      namespace: "storefront", toVersion: $v) { resourceVersion yaml } }"""
    reverted = (await api.data(revert, {"v": first["resourceVersion"]}))["revertResource"]
    assert pyyaml.safe_load(reverted["yaml"])["spec"]["order"] == 100
    assert int(reverted["resourceVersion"]) > int(policy["versions"][0]["resourceVersion"])
    error = await api.error(revert, {"v": "999999"})
    assert error["extensions"]["code"] == "NOT_FOUND"


async def test_revert_recreates_a_deleted_resource(api):
    (created,) = await api.apply(NETWORK_SET)
    await api.data(DELETE, {"k": "NetworkSet", "n": "partners", "ns": "storefront"})
    revert = """mutation($v: String!) { revertResource(kind: "NetworkSet", name: "partners", namespace: "storefront",
      toVersion: $v) { name } }"""
    await api.data(revert, {"v": created["resourceVersion"]})
    assert await stored_keys(api) == [("NetworkSet", "storefront", "partners")]


STAGED_DELETE_BACKEND = """
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: backend, namespace: storefront}
spec: {tier: default, stagedAction: Delete}
"""

PROMOTE = """mutation($k: String!, $n: String!, $ns: String) {
  promoteStagedPolicy(kind: $k, name: $n, namespace: $ns) { kind name namespace staged stagedAction yaml } }"""


async def test_promoting_a_staged_set_creates_the_enforced_twin_and_removes_the_staged_one(api):
    await api.apply(STAGED_FRONTEND)
    data = await api.data(PROMOTE, {"k": "StagedNetworkPolicy", "n": "frontend", "ns": "storefront"})
    promoted = data["promoteStagedPolicy"]
    assert (promoted["kind"], promoted["staged"], promoted["stagedAction"]) == ("NetworkPolicy", False, None)
    document = pyyaml.safe_load(promoted["yaml"])
    staged = pyyaml.safe_load(STAGED_FRONTEND)
    assert document["spec"]["egress"] == staged["spec"]["egress"]
    assert "stagedAction" not in document["spec"]
    assert await stored_keys(api) == [("NetworkPolicy", "storefront", "default.frontend")]


async def test_promoting_a_staged_set_replaces_an_existing_enforced_policy(api):
    await api.apply(
        STAGED_FRONTEND.replace("StagedNetworkPolicy", "NetworkPolicy")
        .replace("  stagedAction: Set\n", "")
        .replace("order: 200", "order: 5")
    )
    await api.apply(STAGED_FRONTEND)
    promoted = (await api.data(PROMOTE, {"k": "StagedNetworkPolicy", "n": "frontend", "ns": "storefront"}))[
        "promoteStagedPolicy"
    ]
    assert pyyaml.safe_load(promoted["yaml"])["spec"]["order"] == 200
    assert await stored_keys(api) == [("NetworkPolicy", "storefront", "default.frontend")]


async def test_promoting_a_staged_delete_deletes_the_enforced_twin(api):
    await api.apply(BACKEND)
    await api.apply(STAGED_DELETE_BACKEND)
    promoted = (await api.data(PROMOTE, {"k": "StagedNetworkPolicy", "n": "backend", "ns": "storefront"}))[
        "promoteStagedPolicy"
    ]
    assert promoted["kind"] == "NetworkPolicy"
    assert await stored_keys(api) == []


@pytest.mark.parametrize(
    ("setup", "variables", "code"),
    [
        (
            STAGED_FRONTEND.replace("stagedAction: Set", "stagedAction: Ignore"),
            {"k": "StagedNetworkPolicy", "n": "frontend", "ns": "storefront"},
            "BAD_USER_INPUT",
        ),
        (BACKEND, {"k": "NetworkPolicy", "n": "backend", "ns": "storefront"}, "BAD_USER_INPUT"),
        (BACKEND, {"k": "StagedNetworkPolicy", "n": "backend", "ns": "storefront"}, "NOT_FOUND"),
        (STAGED_DELETE_BACKEND, {"k": "StagedNetworkPolicy", "n": "backend", "ns": "storefront"}, "NOT_FOUND"),
    ],
)
async def test_promotion_errors_leave_everything_in_place(api, setup, variables, code):
    await api.apply(setup)
    before = await stored_keys(api)
    error = await api.error(PROMOTE, variables)
    assert error["extensions"]["code"] == code
    assert await stored_keys(api) == before


async def test_stage_policy_copies_an_enforced_policy_into_its_staged_twin(api):
    await api.apply(BACKEND)
    stage = """mutation { stagePolicy(kind: "NetworkPolicy", name: "backend", namespace: "storefront") {
      kind name staged stagedAction rules { direction action } } }"""
    staged = (await api.data(stage))["stagePolicy"]
    assert (staged["kind"], staged["name"], staged["staged"], staged["stagedAction"]) == (
        "StagedNetworkPolicy",
        "default.backend",
        True,
        "Set",
    )
    assert [(r["direction"], r["action"]) for r in staged["rules"]] == [("ingress", "Allow"), ("egress", "Allow")]
    error = await api.error(stage)
    assert error["extensions"]["code"] == "CONFLICT"


async def test_set_order_reorders_tiers_and_policies(api):
    await api.apply(TIERS)
    reorder = """mutation($k: String!, $n: String!, $o: Float) {
      setOrder(kind: $k, name: $n, order: $o) { resourceVersion } }"""
    await api.data(reorder, {"k": "Tier", "n": "platform", "o": 50})
    tiers = (await api.data("{ tiers { name order } }"))["tiers"]
    assert [t["name"] for t in tiers] == ["platform", "security", "default"]
    assert tiers[0]["order"] == 50
    error = await api.error(reorder, {"k": "NetworkSet", "n": "x", "o": 1})
    assert error["extensions"]["code"] == "NOT_FOUND"


SET_STAGED_ACTION = """mutation($k: String!, $n: String!, $a: String!, $ns: String) {
  setStagedAction(kind: $k, name: $n, stagedAction: $a, namespace: $ns) { stagedAction resourceVersion } }"""


@pytest.mark.parametrize("action", ["Ignore", "Set", "Learn"])
async def test_a_recommendation_is_accepted_or_ignored_by_its_staged_action(api, action):
    (created,) = await api.apply(STAGED_FRONTEND.replace("stagedAction: Set", "stagedAction: Learn"))
    variables = {"k": "StagedNetworkPolicy", "n": "frontend", "ns": "storefront", "a": action}
    changed = (await api.data(SET_STAGED_ACTION, variables, role="developer"))["setStagedAction"]
    assert changed["stagedAction"] == action
    stored = await api.data(RESOURCE, {"k": "StagedNetworkPolicy", "n": "frontend", "ns": "storefront"})
    assert pyyaml.safe_load(stored["resource"]["yaml"])["spec"].get("stagedAction", "Set") == action  # Set: default
    moved = action != "Learn"
    assert (int(changed["resourceVersion"]) > int(created["resourceVersion"])) is moved


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({"k": "NetworkPolicy", "n": "backend", "ns": "storefront", "a": "Set"}, "BAD_USER_INPUT"),
        ({"k": "StagedNetworkPolicy", "n": "frontend", "ns": "storefront", "a": "Delete"}, "BAD_USER_INPUT"),
        ({"k": "StagedNetworkPolicy", "n": "frontend", "ns": "storefront", "a": "Maybe"}, "BAD_USER_INPUT"),
        ({"k": "StagedNetworkPolicy", "n": "nope", "ns": "storefront", "a": "Set"}, "NOT_FOUND"),
    ],
)
async def test_set_staged_action_errors(api, variables, code):
    await api.apply(STAGED_FRONTEND)
    error = await api.error(SET_STAGED_ACTION, variables)
    assert error["extensions"]["code"] == code
