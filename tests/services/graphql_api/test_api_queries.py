"""The read side over stored resources: tiers, policies, network sets, resources, jobs, selectors."""

from __future__ import annotations

import pytest
import yaml as pyyaml
from api_manifests import BACKEND, NETWORK_SET, SECURITY_POLICY, STAGED_FRONTEND, TIERS, TWILIO

from ringfence.manifests import load_manifests
from ringfence.selector import SelectorError, parse_selector

EVERYTHING = f"{TIERS}---{TWILIO}---{BACKEND}---{STAGED_FRONTEND}---{SECURITY_POLICY}---{NETWORK_SET}"


async def test_tiers_come_in_evaluation_order_with_their_policies_in_order(api):
    await api.apply(EVERYTHING)
    query = """query($s: Boolean) { tiers { name order defaultAction resourceVersion
      policies(includeStaged: $s) { kind name staged order } } }"""
    tiers = (await api.data(query, {"s": True}, role="viewer"))["tiers"]
    assert [(t["name"], t["order"], t["defaultAction"]) for t in tiers] == [
        ("security", 100.0, "Pass"),
        ("platform", 200.0, "Pass"),
        ("default", 1_000_000.0, "Deny"),
    ]
    assert tiers[2]["resourceVersion"] is None  # the implicit default tier
    default = [(p["kind"], p["name"], p["order"]) for p in tiers[2]["policies"]]
    assert default == [("NetworkPolicy", "default.backend", 100.0), ("StagedNetworkPolicy", "default.frontend", 200.0)]
    enforced_only = (await api.data(query, {"s": False}))["tiers"][2]["policies"]
    assert [p["name"] for p in enforced_only] == ["default.backend"]


async def test_one_tier_by_name(api):
    await api.apply(TIERS)
    query = "query($n: String!) { tier(name: $n) { name order yaml } }"
    tier = (await api.data(query, {"n": "platform"}))["tier"]
    assert (tier["name"], tier["order"]) == ("platform", 200.0)
    assert pyyaml.safe_load(tier["yaml"])["spec"]["defaultAction"] == "Pass"
    assert (await api.data(query, {"n": "nowhere"}))["tier"] is None


@pytest.mark.parametrize(
    ("variables", "names"),
    [
        ({}, ["security.known-bad-actors", "platform.twilio-integration", "default.backend", "default.frontend"]),
        ({"tier": "platform"}, ["platform.twilio-integration"]),
        ({"namespace": "storefront"}, ["default.backend", "default.frontend"]),
        ({"namespace": "storefront", "includeStaged": False}, ["default.backend"]),
        ({"kind": "StagedNetworkPolicy"}, ["default.frontend"]),
    ],
)
async def test_policies_filter_by_tier_namespace_kind_and_stage(api, variables, names):
    await api.apply(EVERYTHING)
    query = """query($tier: String, $namespace: String, $includeStaged: Boolean, $kind: String) {
      policies(tier: $tier, namespace: $namespace, includeStaged: $includeStaged, kind: $kind) { name } }"""
    assert [p["name"] for p in (await api.data(query, variables))["policies"]] == names


async def test_a_policy_shows_its_selector_rules_yaml_and_types(api):
    await api.apply(EVERYTHING)
    query = """query($k: String!, $n: String!, $ns: String) { policy(kind: $k, name: $n, namespace: $ns) {
      kind name namespace tier order selector staged types stagedAction namespaceSelector resourceVersion yaml
      rules { direction index action protocol source destination metadata } } }"""
    policy = (await api.data(query, {"k": "GlobalNetworkPolicy", "n": "twilio-integration"}))["policy"]
    written = pyyaml.safe_load(TWILIO.split("---")[1])
    assert policy["name"] == "platform.twilio-integration"
    assert (policy["tier"], policy["order"], policy["types"]) == ("platform", 10.0, ["Egress"])
    assert policy["namespaceSelector"] == written["spec"]["namespaceSelector"]
    assert [(r["direction"], r["index"], r["action"]) for r in policy["rules"]] == [
        ("egress", 0, "Allow"),
        ("egress", 1, "Deny"),
    ]
    assert policy["rules"][0]["destination"] == written["spec"]["egress"][0]["destination"]
    document = pyyaml.safe_load(policy["yaml"])
    assert document["metadata"]["resourceVersion"] == policy["resourceVersion"]
    staged = (await api.data(query, {"k": "StagedNetworkPolicy", "n": "frontend", "ns": "storefront"}))["policy"]
    assert (staged["staged"], staged["stagedAction"], staged["selector"]) == (True, "Set", "app == 'frontend'")
    assert (await api.data(query, {"k": "NetworkPolicy", "n": "frontend", "ns": "storefront"}))["policy"] is None
    error = await api.error(query, {"k": "Tier", "n": "security"})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_kubernetes_policy_shows_its_pod_selector_in_calico_syntax(api):
    knp = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: backend, namespace: storefront}
spec:
  podSelector:
    matchLabels: {app: backend}
    matchExpressions: [{key: tier, operator: In, values: [db, api]}]
  ingress:
  - from: [{podSelector: {matchLabels: {app: microservice1}}}]
    ports: [{port: 5432}]
"""
    await api.apply(knp)
    query = """{ policy(kind: "KubernetesNetworkPolicy", name: "backend", namespace: "storefront") {
      tier selector types rules { direction action source destination } } }"""
    policy = (await api.data(query))["policy"]
    assert policy["tier"] == "default"
    selector = parse_selector(policy["selector"])
    assert selector.matches({"app": "backend", "tier": "db"})
    assert not selector.matches({"app": "backend", "tier": "web"})
    assert not selector.matches({"app": "frontend", "tier": "db"})
    assert policy["rules"][0]["source"]["peers"] == [{"podSelector": {"matchLabels": {"app": "microservice1"}}}]


async def test_network_sets_of_a_namespace_include_the_global_ones(api):
    await api.apply(EVERYTHING + "---" + NETWORK_SET.replace("namespace: storefront", "namespace: billing"))
    query = (
        "query($ns: String) { networkSets(namespace: $ns) { kind name namespace nets allowedEgressDomains labels } }"
    )
    storefront = (await api.data(query, {"ns": "storefront"}))["networkSets"]
    assert sorted((s["kind"], s["namespace"]) for s in storefront) == [
        ("GlobalNetworkSet", None),
        ("NetworkSet", "storefront"),
    ]
    partners = next(s for s in storefront if s["kind"] == "NetworkSet")
    assert (partners["nets"], partners["allowedEgressDomains"], partners["labels"]) == (
        ["198.51.100.0/24"],
        ["api.partner.example"],
        {"role": "partner"},
    )
    assert len((await api.data(query, {}))["networkSets"]) == 3


async def test_resources_and_resource_read_any_kind(api):
    await api.apply(EVERYTHING)
    listing = (await api.data('{ resources(kind: "Tier") { kind name resourceVersion labels document } }'))["resources"]
    assert [r["name"] for r in listing] == ["platform", "security"]
    assert listing[0]["document"]["metadata"]["resourceVersion"] == listing[0]["resourceVersion"]
    everything = (await api.data("{ resources { kind } }"))["resources"]
    assert len(everything) == len(load_manifests(EVERYTHING))
    one = (await api.data('{ resource(kind: "GlobalNetworkSet", name: "public-ips") { labels yaml } }'))["resource"]
    assert one["labels"] == {"type": "public"}
    assert (await api.data('{ resource(kind: "Tier", name: "gone") { name } }'))["resource"] is None


async def test_job_reads_a_job_and_answers_null_for_an_unknown_one(api, task_queue):
    created = await api.data('mutation { recommendPolicies(namespace: "storefront", workload: "backend-*") { id } }')
    job_id = created["recommendPolicies"]["id"]
    query = "query($id: ID!) { job(id: $id) { id kind state progress error result params requestedBy createdAt } }"
    job = (await api.data(query, {"id": job_id}, role="viewer"))["job"]
    assert (job["kind"], job["state"], job["progress"], job["requestedBy"]) == (
        "recommend",
        "queued",
        0.0,
        "admin-user",
    )
    assert job["params"]["namespace"] == "storefront"
    assert ("ringfence.recommend", [job_id]) in await task_queue.messages()
    for unknown in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        assert (await api.data(query, {"id": unknown}))["job"] is None


@pytest.mark.parametrize(
    "selector", ["app == 'frontend' && has(tier)", "a in {'y', 'x'}", "", "app ==", "a == 'x' &&& b", "has(a"]
)
async def test_validate_selector_agrees_with_the_core(api, selector):
    query = "query($s: String!) { validateSelector(selector: $s) { ok error position canonical } }"
    check = (await api.data(query, {"s": selector}, role="viewer"))["validateSelector"]
    try:
        expected = {"ok": True, "error": None, "position": None, "canonical": str(parse_selector(selector))}
    except SelectorError as error:
        expected = {"ok": False, "error": str(error), "position": error.position, "canonical": None}
    assert check == expected
