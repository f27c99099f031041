"""The RBAC matrix: each role against each operation, through the real API.

Roles (tokens of conftest.ROLE_GRANTS): admin; tier-admin of tier ``security``; developer of tier
``default`` in namespace ``storefront``; viewer. A refused operation answers FORBIDDEN and changes
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from api_manifests import (
    BACKEND,
    NETWORK_SET,
    SECURITY_POLICY,
    STAGED_FRONTEND,
    TIERS,
    TWILIO,
    global_policy,
    namespaced_policy,
)

ROLES = ("admin", "tier-admin", "developer", "viewer")
APPLY = "mutation($y: String!) { applyManifests(yaml: $y) { name } }"
BASELINE = f"{TIERS}---{TWILIO}---{BACKEND}---{STAGED_FRONTEND}---{SECURITY_POLICY}"


@dataclass(frozen=True)
class Operation:
    query: str
    variables: dict[str, Any]
    allowed: frozenset[str]


def everyone_but(*roles: str) -> frozenset[str]:
    return frozenset(ROLES) - set(roles)


OPERATIONS: dict[str, Operation] = {
    "read tiers, policies and sets": Operation(
        "{ tiers { name policies { name } } policies { name } networkSets { name } resources { name } }",
        {},
        frozenset(ROLES),
    ),
    "read the audit log": Operation("{ auditLog { totalCount } }", {}, frozenset(ROLES)),
    "write a policy in default/storefront": Operation(
        APPLY, {"y": namespaced_policy("web", "storefront")}, frozenset({"admin", "developer"})
    ),
    "write a policy in default/billing": Operation(
        APPLY, {"y": namespaced_policy("web", "billing")}, frozenset({"admin"})
    ),
    "write a policy in security/storefront": Operation(
        APPLY, {"y": namespaced_policy("web", "storefront", tier="security")}, frozenset({"admin", "tier-admin"})
    ),
    "write a global policy in security": Operation(
        APPLY, {"y": global_policy("audit", "security")}, frozenset({"admin", "tier-admin"})
    ),
    "write a global policy in platform": Operation(
        APPLY, {"y": global_policy("audit", "platform")}, frozenset({"admin"})
    ),
    "write the security tier": Operation(
        APPLY, {"y": TIERS.split("---")[0].replace("order: 100", "order: 90")}, frozenset({"admin", "tier-admin"})
    ),
    "write a tier of its own": Operation(
        APPLY,
        {"y": "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: team}\nspec: {order: 300}"},
        frozenset({"admin"}),
    ),
    "write a global network set": Operation(
        APPLY, {"y": TWILIO.split("---")[0].replace("public-ips", "more-ips")}, frozenset({"admin"})
    ),
    "write a network set in storefront": Operation(APPLY, {"y": NETWORK_SET}, frozenset({"admin", "developer"})),
    "write a namespace": Operation(
        APPLY,
        {"y": "apiVersion: v1\nkind: Namespace\nmetadata: {name: storefront, labels: {twilio: allowed}}"},
        frozenset({"admin"}),
    ),
    "delete a policy in default/storefront": Operation(
        'mutation { deleteResource(kind: "NetworkPolicy", name: "backend", namespace: "storefront") }',
        {},
        frozenset({"admin", "developer"}),
    ),
    "delete a global policy in security": Operation(
        'mutation { deleteResource(kind: "GlobalNetworkPolicy", name: "security.known-bad-actors") }',
        {},
        frozenset({"admin", "tier-admin"}),
    ),
    "promote a staged policy in default/storefront": Operation(
        """mutation { promoteStagedPolicy(kind: "StagedNetworkPolicy", name: "frontend", namespace: "storefront") {
          name } }""",
        {},
        frozenset({"admin", "developer"}),
    ),
    "ignore a recommendation in default/storefront": Operation(
        """mutation { setStagedAction(kind: "StagedNetworkPolicy", name: "frontend", namespace: "storefront",
          stagedAction: "Ignore") { name } }""",
        {},
        frozenset({"admin", "developer"}),
    ),
    "stage an edit in default/storefront": Operation(
        'mutation { stagePolicy(kind: "NetworkPolicy", name: "backend", namespace: "storefront") { name } }',
        {},
        frozenset({"admin", "developer"}),
    ),
    "reorder the security tier": Operation(
        'mutation { setOrder(kind: "Tier", name: "security", order: 10) { name } }',
        {},
        frozenset({"admin", "tier-admin"}),
    ),
    "reorder a policy in default/storefront": Operation(
        'mutation { setOrder(kind: "NetworkPolicy", name: "backend", namespace: "storefront", order: 10) { name } }',
        {},
        frozenset({"admin", "developer"}),
    ),
    "revert a policy in default/storefront": Operation("revert", {}, frozenset({"admin", "developer"})),
    "recommend policies for storefront": Operation(
        'mutation { recommendPolicies(namespace: "storefront") { id } }', {}, frozenset({"admin", "developer"})
    ),
    "recommend policies for billing": Operation(
        'mutation { recommendPolicies(namespace: "billing") { id } }', {}, frozenset({"admin"})
    ),
}

MATRIX = [(name, role) for name in OPERATIONS for role in ROLES]


async def snapshot(api) -> list[tuple[Any, ...]]:
    rows = await api.fetch("SELECT kind, namespace, name, resource_version FROM resources ORDER BY 1, 2, 3")
    jobs = await api.fetch("SELECT count(*) AS n FROM jobs")
    return [tuple(row) for row in rows] + [("jobs", jobs[0]["n"])]


@pytest.mark.parametrize(("operation", "role"), MATRIX, ids=[f"{name} as {role}" for name, role in MATRIX])
async def test_rbac_matrix(api, task_queue, operation, role):
    await api.apply(BASELINE)
    spec = OPERATIONS[operation]
    query, variables = spec.query, spec.variables
    if query == "revert":
        await api.apply(BACKEND.replace("order: 100", "order: 120"))
        versions = await api.fetch(
            "SELECT min(resource_version) AS v FROM resource_versions WHERE name = 'default.backend'"
        )
        query = """mutation($v: String!) { revertResource(kind: "NetworkPolicy", name: "default.backend",
          namespace: "storefront", toVersion: $v) { name } }"""
        variables = {"v": str(versions[0]["v"])}
    before = await snapshot(api)
    body = await api.post(query, variables, role=role)
    if role in spec.allowed:
        assert "errors" not in body, body
    else:
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "FORBIDDEN", error
        assert await snapshot(api) == before


@pytest.mark.parametrize(
    ("role", "checks"),
    [
        ("admin", {("write", "platform", None): True, ("promote", "default", "billing"): True}),
        (
            "tier-admin",
            {
                ("write", "security", None): True,
                ("write", "security", "x"): True,
                ("write", "default", "x"): False,
                ("read", None, None): True,
            },
        ),
        (
            "developer",
            {
                ("write", "default", "storefront"): True,
                ("preview", "default", "storefront"): True,
                ("write", "default", None): False,
                ("write", "security", "storefront"): False,
                ("write", None, "storefront"): True,
            },
        ),
        (
            "viewer",
            {
                ("read", "security", None): True,
                ("write", "default", "storefront"): False,
                ("preview", "default", "storefront"): False,
            },
        ),
    ],
)
async def test_me_answers_what_the_caller_may_do(api, role, checks):
    me = (await api.data("{ me { name role tiers namespaces grants { verb tier namespace } } }", role=role))["me"]
    assert (me["name"], me["role"]) == (f"{role}-user", role)
    for (verb, tier, namespace), allowed in checks.items():
        query = "query($v: String!, $t: String, $n: String) { me { can(verb: $v, tier: $t, namespace: $n) } }"
        answer = await api.data(query, {"v": verb, "t": tier, "n": namespace}, role=role)
        assert answer["me"]["can"] is allowed, (verb, tier, namespace)
    verbs = {grant["verb"] for grant in me["grants"]}
    assert verbs == ({"read"} if role == "viewer" else {"read", "write", "preview", "promote"})


async def test_only_the_requester_or_an_admin_may_cancel_a_job(api, task_queue):
    job = (await api.data('mutation { recommendPolicies(namespace: "storefront") { id } }', role="developer"))[
        "recommendPolicies"
    ]
    cancel = "mutation($id: ID!) { cancelJob(id: $id) { state } }"
    error = await api.error(cancel, {"id": job["id"]}, role="tier-admin")
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert (await api.data(cancel, {"id": job["id"]}, role="developer"))["cancelJob"]["state"] == "cancelled"
