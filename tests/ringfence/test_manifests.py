"""Loading and dumping manifests: the storefront scenario, every kind with every field, inputs and defaults."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from ringfence.demo import tiers_manifest
from ringfence.manifests import dump_manifests, load_manifests, resource_from_dict, resource_to_dict
from ringfence.model import (
    Action,
    EntityRule,
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    HTTPMatch,
    HTTPPath,
    ICMPFields,
    IPBlock,
    K8sPeer,
    K8sPort,
    K8sRule,
    KubernetesNetworkPolicy,
    LabelSelector,
    LabelSelectorRequirement,
    Namespace,
    NetworkPolicy,
    NetworkSet,
    PolicyType,
    PortRange,
    Rule,
    ServiceAccountMatch,
    ServiceMatch,
    StagedAction,
    StagedGlobalNetworkPolicy,
    StagedKubernetesNetworkPolicy,
    StagedNetworkPolicy,
    Tier,
    resource_key,
)

# The demo's tiers, then the platform policy as a user might write it: no order, any protocol.
STOREFRONT = (
    tiers_manifest()
    + """---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: platform.twilio-integration
spec:
  tier: platform
  namespaceSelector: twilio == 'allowed'
  types: [Egress]
  egress:
  - action: Allow
    destination:
      domains: ["*.twilio.com"]
  - action: Deny
    destination:
      selector: type == 'public'
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: public-ip-range
  labels: {type: public}
spec:
  nets: [0.0.0.0/0]
---
apiVersion: v1
kind: Namespace
metadata:
  name: storefront
  labels: {twilio: allowed}
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata:
  name: backend
  namespace: storefront
spec:
  stagedAction: Learn
  selector: app == 'backend'
  egress:
  - action: Allow
    protocol: TCP
    destination:
      selector: app == 'logging'
      ports: [8080]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: frontend
  namespace: storefront
spec:
  podSelector:
    matchLabels: {app: frontend}
  policyTypes: [Ingress]
  ingress:
  - from:
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
    ports:
    - {port: 8000, endPort: 8080}
    - {port: http, protocol: TCP}
"""
)


def test_storefront_loads_as_the_scenario_describes() -> None:
    tiers, platform, gnp, public, namespace, staged, knp = load_manifests(STOREFRONT)
    assert isinstance(tiers, Tier)
    assert isinstance(platform, Tier)
    assert (tiers.name, tiers.order, tiers.default_action) == ("security", 100.0, Action.PASS)
    assert (platform.name, platform.order, platform.default_action) == ("platform", 200.0, Action.PASS)

    assert isinstance(gnp, GlobalNetworkPolicy)
    assert gnp.tier == "platform"
    assert gnp.qualified_name == "platform.twilio-integration"
    assert gnp.spec.namespace_selector == "twilio == 'allowed'"
    assert gnp.spec.types == (PolicyType.EGRESS,)
    assert gnp.spec.egress == (
        Rule(action=Action.ALLOW, destination=EntityRule(domains=("*.twilio.com",))),
        Rule(action=Action.DENY, destination=EntityRule(selector="type == 'public'")),
    )

    assert isinstance(public, GlobalNetworkSet)
    assert dict(public.metadata.labels) == {"type": "public"}
    assert public.nets == ("0.0.0.0/0",)
    assert isinstance(namespace, Namespace)
    assert dict(namespace.metadata.labels) == {"twilio": "allowed"}

    assert isinstance(staged, StagedNetworkPolicy)
    assert staged.staged_action is StagedAction.LEARN
    assert (staged.namespace, staged.tier, staged.spec.types) == ("storefront", "default", (PolicyType.EGRESS,))
    assert staged.spec.egress[0].destination.ports == (PortRange(8080, 8080),)

    assert isinstance(knp, KubernetesNetworkPolicy)
    assert knp.spec.pod_selector == LabelSelector(match_labels={"app": "frontend"})
    assert knp.spec.ingress == (
        K8sRule(
            ports=(K8sPort(protocol="TCP", port=8000, end_port=8080), K8sPort(protocol="TCP", port="http")),
            peers=(K8sPeer(ip_block=IPBlock(cidr="10.0.0.0/8", except_=("10.1.0.0/16",))),),
        ),
    )
    assert load_manifests(dump_manifests([tiers, platform, gnp, public, namespace, staged, knp])) == [
        tiers,
        platform,
        gnp,
        public,
        namespace,
        staged,
        knp,
    ]


METADATA: dict[str, Any] = {
    "labels": {"team": "platform", "example.com/owner": "sre"},
    "annotations": {"note": "anything: goes here"},
    "resourceVersion": "4711",
    "uid": "0b7a1f5e-2c1d-4c55-9a53-7d1d1c0e9a11",
    "creationTimestamp": "2024-05-01T10:00:00Z",
}
INGRESS_RULES: list[dict[str, Any]] = [
    {
        "action": "Allow",
        "protocol": "TCP",
        "metadata": {"annotations": {"why": "frontend calls the api"}},
        "http": {"methods": ["GET", "POST"], "paths": [{"exact": "/health"}, {"prefix": "/api/"}]},
        "source": {
            "nets": ["10.0.0.0/8"],
            "notNets": ["10.9.0.0/16"],
            "selector": "app == 'frontend'",
            "notSelector": "canary == 'true'",
            "namespaceSelector": "team == 'web'",
            "serviceAccounts": {"names": ["web", "web-canary"], "selector": "role == 'edge'"},
            "ports": [1024, "2000:3000"],
            "notPorts": ["metrics"],
        },
        "destination": {"ports": [8080, "http"], "notPorts": [9090]},
    },
    {
        "action": "Deny",
        "protocol": "ICMP",
        "notProtocol": "UDP",
        "icmp": {"type": 8, "code": 0},
        "notICMP": {"type": 3},
        "ipVersion": 4,
        "source": {"services": {"name": "probe", "namespace": "monitoring"}},
    },
    {"action": "Log", "protocol": 132, "source": {"ports": [5000]}},
    {"action": "Pass", "notProtocol": "UDPLite", "ipVersion": 6, "source": {"nets": ["fd00::/64"]}},
]
EGRESS_RULES: list[dict[str, Any]] = [
    {"action": "Allow", "protocol": "TCP", "destination": {"domains": ["api.twilio.com", "*.twilio.com", "www.*.io"]}},
    {"action": "Allow", "destination": {"services": {"name": "kube-dns", "namespace": "kube-system"}}},
    {"action": "Deny", "protocol": "ICMPv6", "icmp": {"type": 128}, "destination": {"namespaceSelector": "global()"}},
]

EVERY_KIND: list[dict[str, Any]] = [
    {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Tier",
        "metadata": {"name": "security", **METADATA},
        "spec": {"order": 100.5, "defaultAction": "Pass"},
    },
    {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": "security.api", "namespace": "storefront", **METADATA},
        "spec": {
            "tier": "security",
            "order": 0,
            "selector": "app == 'api'",
            "serviceAccountSelector": "role == 'api'",
            "types": ["Ingress", "Egress"],
            "ingress": INGRESS_RULES,
            "egress": EGRESS_RULES,
        },
    },
    {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "host-guard", **METADATA},
        "spec": {
            "tier": "default",
            "order": 10,
            "selector": "has(host)",
            "namespaceSelector": "twilio == 'allowed'",
            "serviceAccountSelector": "all()",
            "types": ["Ingress"],
            "ingress": [{"action": "Allow", "source": {"services": {"name": "api", "namespace": "web"}}}],
            "doNotTrack": True,
            "applyOnForward": True,
        },
    },
    {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "pre-dnat"},
        "spec": {
            "tier": "default",
            "ingress": [
                {"action": "Deny", "source": {"nets": ["192.0.2.0/24"]}},
                {"action": "Allow", "protocol": "ICMP", "icmp": {}},
                {"action": "Allow", "http": {}, "source": {"serviceAccounts": {}}},
            ],
            "preDNAT": True,
            "applyOnForward": True,
        },
    },
    {
        "apiVersion": "projectcalico.org/v3",
        "kind": "StagedNetworkPolicy",
        "metadata": {"name": "backend", "namespace": "storefront", **METADATA},
        "spec": {"stagedAction": "Learn", "tier": "default", "selector": "app == 'backend'", "egress": EGRESS_RULES},
    },
    {
        "apiVersion": "projectcalico.org/v3",
        "kind": "StagedNetworkPolicy",
        "metadata": {"name": "set-by-default", "namespace": "storefront"},
        "spec": {"tier": "default", "ingress": [{"action": "Allow"}]},
    },
    {
        "apiVersion": "projectcalico.org/v3",
        "kind": "StagedGlobalNetworkPolicy",
        "metadata": {"name": "platform.retire-me"},
        "spec": {"stagedAction": "Delete", "tier": "platform"},
    },
    {
        "apiVersion": "projectcalico.org/v3",
        "kind": "StagedGlobalNetworkPolicy",
        "metadata": {"name": "ignored"},
        "spec": {"stagedAction": "Ignore", "tier": "platform", "namespaceSelector": "all()", "egress": EGRESS_RULES},
    },
    {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "web.allow", "namespace": "storefront", **METADATA},
        "spec": {
            "podSelector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["a", "b"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                ],
            },
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "ports": [{"protocol": "TCP", "port": 8000, "endPort": 8080}, {"protocol": "UDP", "port": "dns"}],
                    "from": [
                        {"podSelector": {}, "namespaceSelector": {"matchLabels": {"team": "web"}}},
                        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.2.0.0/16"]}},
                    ],
                },
                {},
            ],
            "egress": [{"to": [{"namespaceSelector": {}}]}, {"ports": [{"protocol": "SCTP"}]}],
        },
    },
    {
        "apiVersion": "projectcalico.org/v3",
        "kind": "StagedKubernetesNetworkPolicy",
        "metadata": {"name": "db", "namespace": "storefront"},
        "spec": {
            "stagedAction": "Ignore",
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "backend"}}}]}],
        },
    },
    {
        "apiVersion": "projectcalico.org/v3",
        "kind": "StagedKubernetesNetworkPolicy",
        "metadata": {"name": "gone", "namespace": "storefront"},
        "spec": {"stagedAction": "Delete", "podSelector": {}},
    },
    {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkSet",
        "metadata": {"name": "partners", "namespace": "storefront", **METADATA},
        "spec": {"nets": ["198.51.100.0/24", "2001:db8::/32"], "allowedEgressDomains": ["*.partner.example"]},
    },
    {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkSet",
        "metadata": {"name": "public-ip-range", "labels": {"type": "public"}},
        "spec": {"nets": ["0.0.0.0/0"]},
    },
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "storefront", **METADATA}},
]


@pytest.mark.parametrize("document", EVERY_KIND, ids=lambda d: f"{d['kind']}-{d['metadata']['name']}")
def test_every_field_survives_a_round_trip(document: dict[str, Any]) -> None:
    resource = resource_from_dict(document)
    assert resource_to_dict(resource) == document
    assert load_manifests(dump_manifests([resource])) == [resource]
    assert load_manifests(json.dumps(document)) == [resource]


def test_documents_are_written_in_a_stable_readable_key_order() -> None:
    written = resource_to_dict(resource_from_dict(EVERY_KIND[1]))
    assert list(written) == ["apiVersion", "kind", "metadata", "spec"]
    assert list(written["metadata"])[:2] == ["name", "namespace"]
    assert list(written["spec"]) == list(EVERY_KIND[1]["spec"])
    assert list(written["spec"]["ingress"][0]) == list(INGRESS_RULES[0])
    text = dump_manifests([resource_from_dict(document) for document in EVERY_KIND[:3]])
    assert text.count("---\n") == 2
    assert text.startswith("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: security\n")


def test_namespaced_policy_fields_reach_the_right_model_fields() -> None:
    policy = resource_from_dict(EVERY_KIND[1])
    assert isinstance(policy, NetworkPolicy)
    spec = policy.spec
    assert (spec.tier, spec.order, spec.selector, spec.service_account_selector) == (
        "security",
        0.0,
        "app == 'api'",
        "role == 'api'",
    )
    assert spec.types == (PolicyType.INGRESS, PolicyType.EGRESS)
    assert spec.types_given
    first, second, third, fourth = spec.ingress
    assert first.http == HTTPMatch(methods=("GET", "POST"), paths=(HTTPPath(exact="/health"), HTTPPath(prefix="/api/")))
    assert dict(first.metadata) == {"why": "frontend calls the api"}
    assert first.source == EntityRule(
        nets=("10.0.0.0/8",),
        not_nets=("10.9.0.0/16",),
        selector="app == 'frontend'",
        not_selector="canary == 'true'",
        namespace_selector="team == 'web'",
        service_accounts=ServiceAccountMatch(names=("web", "web-canary"), selector="role == 'edge'"),
        ports=(PortRange(1024, 1024), PortRange(2000, 3000)),
        not_ports=("metrics",),
    )
    assert first.destination == EntityRule(ports=(PortRange(8080, 8080), "http"), not_ports=(PortRange(9090, 9090),))
    assert (second.protocol, second.not_protocol, second.ip_version) == ("ICMP", "UDP", 4)
    assert (second.icmp, second.not_icmp) == (ICMPFields(type=8, code=0), ICMPFields(type=3))
    assert second.source.services == ServiceMatch(name="probe", namespace="monitoring")
    assert (third.action, third.protocol) == (Action.LOG, 132)
    assert (fourth.action, fourth.not_protocol, fourth.ip_version) == (Action.PASS, "UDPLite", 6)
    assert spec.egress[2].destination.namespace_selector == "global()"
    meta = policy.metadata
    assert (meta.resource_version, meta.uid, meta.creation_timestamp) == (
        "4711",
        "0b7a1f5e-2c1d-4c55-9a53-7d1d1c0e9a11",
        "2024-05-01T10:00:00Z",
    )


def test_kubernetes_policy_fields_reach_the_right_model_fields() -> None:
    policy = resource_from_dict(EVERY_KIND[8])
    assert isinstance(policy, KubernetesNetworkPolicy)
    assert policy.spec.pod_selector.match_expressions == (
        LabelSelectorRequirement(key="tier", operator="In", values=("a", "b")),
        LabelSelectorRequirement(key="canary", operator="DoesNotExist"),
    )
    peers = policy.spec.ingress[0].peers
    assert peers[0] == K8sPeer(pod_selector=LabelSelector(), namespace_selector=LabelSelector({"team": "web"}))
    assert policy.spec.ingress[1] == K8sRule()
    assert policy.spec.egress == (
        K8sRule(peers=(K8sPeer(namespace_selector=LabelSelector()),)),
        K8sRule(ports=(K8sPort(protocol="SCTP"),)),
    )
    staged = resource_from_dict(EVERY_KIND[9])
    assert isinstance(staged, StagedKubernetesNetworkPolicy)
    assert staged.staged_action is StagedAction.IGNORE
    deleted = resource_from_dict(EVERY_KIND[10])
    assert isinstance(deleted, StagedKubernetesNetworkPolicy)
    assert deleted.staged_action is StagedAction.DELETE


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("tcp", "TCP"),
        ("Udp", "UDP"),
        ("icmp", "ICMP"),
        ("icmpv6", "ICMPv6"),
        ("sctp", "SCTP"),
        ("udplite", "UDPLite"),
        (6, 6),
        ("17", 17),
        (255, 255),
    ],
)
def test_protocols_are_read_in_any_case_and_written_canonically(written: object, expected: object) -> None:
    document = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "p"},
        "spec": {"ingress": [{"action": "Allow", "protocol": written, "notProtocol": written}]},
    }
    policy = resource_from_dict(document)
    assert isinstance(policy, GlobalNetworkPolicy)
    rule = policy.spec.ingress[0]
    assert (rule.protocol, rule.not_protocol) == (expected, expected)
    assert resource_to_dict(resource_from_dict(document))["spec"]["ingress"][0]["protocol"] == expected


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (80, PortRange(80, 80)),
        ("80", PortRange(80, 80)),
        ("1000:2000", PortRange(1000, 2000)),
        ("443:443", PortRange(443, 443)),
        ("http", "http"),
        ("grpc-web", "grpc-web"),
        (65535, PortRange(65535, 65535)),
    ],
)
def test_ports_read_as_numbers_ranges_or_names(written: object, expected: object) -> None:
    document = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "p"},
        "spec": {"ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [written]}}]},
    }
    resource = resource_from_dict(document)
    assert isinstance(resource, GlobalNetworkPolicy)
    assert resource.spec.ingress[0].destination.ports == (expected,)
    assert load_manifests(dump_manifests([resource])) == [resource]


def test_unquoted_yaml_port_ranges_and_timestamps_stay_strings() -> None:
    (policy,) = load_manifests(
        """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p, creationTimestamp: 2024-05-01T10:00:00Z}
spec:
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [20:30, 8080]}}
"""
    )
    assert isinstance(policy, GlobalNetworkPolicy)
    assert policy.spec.ingress[0].destination.ports == (PortRange(20, 30), PortRange(8080, 8080))
    assert policy.metadata.creation_timestamp == "2024-05-01T10:00:00Z"


def _policy(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy", "metadata": {"name": name}, "spec": spec}


@pytest.mark.parametrize(
    ("spec", "types"),
    [
        ({}, (PolicyType.INGRESS,)),
        ({"ingress": [{"action": "Allow"}]}, (PolicyType.INGRESS,)),
        ({"egress": [{"action": "Allow"}]}, (PolicyType.EGRESS,)),
        ({"ingress": [{"action": "Deny"}], "egress": [{"action": "Allow"}]}, (PolicyType.INGRESS, PolicyType.EGRESS)),
        ({"types": []}, (PolicyType.INGRESS,)),
    ],
)
def test_omitted_types_follow_the_rules_and_are_not_written_back(spec: dict[str, Any], types: object) -> None:
    policy = resource_from_dict(_policy("p", **spec))
    assert isinstance(policy, NetworkPolicy)
    assert policy.spec.types == types
    assert not policy.spec.types_given
    assert "types" not in resource_to_dict(policy)["spec"]


def test_written_types_are_kept_even_when_they_equal_the_default() -> None:
    policy = resource_from_dict(_policy("p", types=["Ingress"]))
    assert isinstance(policy, NetworkPolicy)
    assert policy.spec.types_given
    assert resource_to_dict(policy)["spec"]["types"] == ["Ingress"]


def test_defaults_of_tier_namespace_tier_action_and_staged_action() -> None:
    policy, tier, staged = load_manifests(
        """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: t}
---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: s}
"""
    )
    assert isinstance(policy, NetworkPolicy)
    assert (policy.namespace, policy.tier, policy.spec.order) == ("default", "default", None)
    assert isinstance(tier, Tier)
    assert (tier.order, tier.default_action) == (None, Action.DENY)
    assert isinstance(staged, StagedGlobalNetworkPolicy)
    assert staged.staged_action is StagedAction.SET
    # calicoctl always shows the tier and a tier's default action; nothing else is invented.
    assert resource_to_dict(policy)["spec"] == {"tier": "default"}
    assert resource_to_dict(tier)["spec"] == {"defaultAction": "Deny"}
    assert resource_to_dict(staged)["spec"] == {"tier": "default"}


@pytest.mark.parametrize(
    ("name", "tier"),
    [("platform.twilio", "platform"), ("default.api", "default"), ("api", "default"), ("api", "platform")],
)
def test_legacy_and_plain_policy_names(name: str, tier: str) -> None:
    spec = {} if tier == "default" and name.startswith("default.") else {"tier": tier}
    policy = resource_from_dict(_policy(name, **spec))
    assert isinstance(policy, NetworkPolicy)
    assert policy.name == name
    assert policy.tier == tier
    assert resource_key(policy).name == f"{tier}.{name.removeprefix(tier + '.')}"
    assert load_manifests(dump_manifests([policy])) == [policy]


def test_calico_crd_api_version_is_read_and_written_as_v3() -> None:
    (network_set,) = load_manifests(
        "apiVersion: crd.projectcalico.org/v1\nkind: NetworkSet\nmetadata: {name: s, namespace: n}\nspec: {}\n"
    )
    assert isinstance(network_set, NetworkSet)
    assert resource_to_dict(network_set)["apiVersion"] == "projectcalico.org/v3"


def test_kind_list_in_yaml_and_json() -> None:
    items = [EVERY_KIND[0], EVERY_KIND[12], EVERY_KIND[13]]
    expected = [resource_from_dict(item) for item in items]
    listing = {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}
    assert load_manifests(yaml.safe_dump(listing)) == expected
    assert load_manifests(json.dumps(listing, indent="\t")) == expected
    assert load_manifests(yaml.safe_dump(listing) + "---\n" + yaml.safe_dump(EVERY_KIND[1])) == [
        *expected,
        resource_from_dict(EVERY_KIND[1]),
    ]


def test_json_inputs_single_concatenated_and_array() -> None:
    first, second = EVERY_KIND[12], EVERY_KIND[13]
    expected = [resource_from_dict(first), resource_from_dict(second)]
    assert load_manifests(json.dumps(first)) == expected[:1]
    assert load_manifests(json.dumps(first) + "\n" + json.dumps(second)) == expected
    assert load_manifests(json.dumps([first, second])) == expected


def test_yaml_flow_style_that_is_not_json() -> None:
    (tier,) = load_manifests("{apiVersion: projectcalico.org/v3, kind: Tier, metadata: {name: t}}")
    assert isinstance(tier, Tier)
    assert tier.name == "t"


def test_empty_inputs_and_documents() -> None:
    assert load_manifests("") == []
    assert load_manifests("---\n---\n# only a comment\n") == []
    assert dump_manifests([]) == ""
    assert len(load_manifests("---\n" + yaml.safe_dump(EVERY_KIND[0]) + "---\n")) == 1


def test_namespace_adds_no_implicit_labels_and_ignores_status() -> None:
    (namespace,) = load_manifests(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns\n  generation: 3\n"
        "spec: {finalizers: [kubernetes]}\nstatus: {phase: Active}\n"
    )
    assert isinstance(namespace, Namespace)
    assert dict(namespace.metadata.labels) == {}
    assert resource_to_dict(namespace) == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}


def test_empty_selectors_read_as_absent() -> None:
    policy = resource_from_dict(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "p"},
            "spec": {"namespaceSelector": "", "ingress": [{"action": "Allow", "source": {"selector": ""}}]},
        }
    )
    assert isinstance(policy, GlobalNetworkPolicy)
    assert policy.spec.namespace_selector is None
    assert policy.spec.ingress[0].source.selector is None


@pytest.mark.parametrize(
    ("kind", "namespace", "extra"),
    [
        ("GlobalNetworkPolicy", None, {}),
        ("NetworkPolicy", "storefront", {}),
        ("StagedGlobalNetworkPolicy", None, {"stagedAction": "Set"}),
        ("StagedNetworkPolicy", "storefront", {"stagedAction": "Learn"}),
    ],
)
def test_performance_hints_of_an_exported_policy_are_kept_through_a_round_trip(
    kind: str, namespace: str | None, extra: dict[str, Any]
) -> None:
    # Calico 3.28+ writes spec.performanceHints; it tunes Felix's rule programming, not verdicts, but an
    # export read and written back by Ringfence must not lose it.
    metadata: dict[str, Any] = {"name": "security.p"}
    if namespace:
        metadata["namespace"] = namespace
    spec: dict[str, Any] = {"tier": "security", "selector": "app == 'web'", "egress": [{"action": "Allow"}], **extra}
    document = {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": metadata, "spec": spec}
    hinted = {**document, "spec": {**spec, "performanceHints": ["AssumeNeededOnEveryNode"]}}
    loaded = resource_from_dict(hinted)
    assert loaded.spec.performance_hints == ("AssumeNeededOnEveryNode",)  # type: ignore[union-attr]
    assert resource_to_dict(loaded)["spec"]["performanceHints"] == ["AssumeNeededOnEveryNode"]
    assert load_manifests(dump_manifests([loaded])) == [loaded]
    assert load_manifests(json.dumps({**hinted, "spec": {**spec, "performanceHints": []}})) == [
        resource_from_dict(document)
    ]
