"""Validation of manifests: each problem is reported with its document, resource, exact field path and cause."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from ringfence.manifests import ManifestError, ManifestIssue, load_manifests, resource_from_dict
from ringfence.selector import SelectorError, parse_selector


def calico(kind: str, name: str = "p", namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": metadata, "spec": spec}


def gnp(**spec: Any) -> dict[str, Any]:
    return calico("GlobalNetworkPolicy", **spec)


def np(**spec: Any) -> dict[str, Any]:
    return calico("NetworkPolicy", namespace="storefront", **spec)


def knp(**spec: Any) -> dict[str, Any]:
    metadata = {"name": "k", "namespace": "storefront"}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata, "spec": spec}


def ingress(**rule: Any) -> dict[str, Any]:
    return gnp(ingress=[{"action": "Allow", **rule}])


def egress(**rule: Any) -> dict[str, Any]:
    return gnp(egress=[{"action": "Allow", **rule}])


def knp_port(**port: Any) -> dict[str, Any]:
    return knp(podSelector={}, ingress=[{"ports": [port]}])


def knp_peer(**peer: Any) -> dict[str, Any]:
    return knp(podSelector={}, egress=[{"to": [peer]}])


def issues_of(*documents: dict[str, Any]) -> list[ManifestIssue]:
    with pytest.raises(ManifestError) as raised:
        load_manifests(yaml.safe_dump_all(documents))
    return raised.value.errors


# (case, document, exact path of the problem, words the message must contain)
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # selectors
    ("policy selector", gnp(selector="app = 'x'"), "spec.selector", "position"),
    ("namespace selector", gnp(namespaceSelector="a in {'x'"), "spec.namespaceSelector", "position"),
    ("sa selector", gnp(serviceAccountSelector="has(a"), "spec.serviceAccountSelector", "position"),
    ("rule selector", ingress(source={"selector": "a ==="}), "spec.ingress[0].source.selector", "position"),
    ("not selector", ingress(source={"notSelector": "!"}), "spec.ingress[0].source.notSelector", "position"),
    (
        "rule sa selector",
        ingress(source={"serviceAccounts": {"selector": "("}}),
        "spec.ingress[0].source.serviceAccounts.selector",
        "position",
    ),
    ("global() as policy selector", gnp(selector="global()"), "spec.selector", "global() may only be used"),
    (
        "global() in rule selector",
        ingress(source={"selector": "global()"}),
        "spec.ingress[0].source.selector",
        "global()",
    ),
    (
        "global() combined",
        ingress(source={"namespaceSelector": "global() && a == 'b'"}),
        "spec.ingress[0].source.namespaceSelector",
        "alone",
    ),
    # CIDRs
    ("garbage net", ingress(source={"nets": ["garbage"]}), "spec.ingress[0].source.nets[0]", "not a valid CIDR"),
    (
        "prefix too long",
        ingress(destination={"notNets": ["10.0.0.0/8", "10.0.0.0/33"]}),
        "spec.ingress[0].destination.notNets[1]",
        "'10.0.0.0/33'",
    ),
    (
        "mixed versions",
        ingress(source={"nets": ["10.0.0.0/8"]}, destination={"nets": ["fd00::/8"]}),
        "spec.ingress[0].destination.nets",
        "IPv4 and IPv6",
    ),
    (
        "version mismatch",
        ingress(ipVersion=6, source={"nets": ["10.0.0.0/8"]}),
        "spec.ingress[0].source.nets",
        "ipVersion 6",
    ),
    ("network set net", calico("GlobalNetworkSet", nets=["1.2.3.4/8", "1.2.3"]), "spec.nets[1]", "not a valid CIDR"),
    # ports and protocols
    (
        "ports without protocol",
        ingress(destination={"ports": [80]}),
        "spec.ingress[0].destination.ports",
        "no protocol",
    ),
    (
        "notPorts with ICMP",
        ingress(protocol="ICMP", source={"notPorts": [80]}),
        "spec.ingress[0].source.notPorts",
        "protocol is ICMP",
    ),
    (
        "port zero",
        ingress(protocol="TCP", destination={"ports": [0]}),
        "spec.ingress[0].destination.ports[0]",
        "between 1 and 65535",
    ),
    (
        "port too big",
        ingress(protocol="TCP", destination={"ports": ["70000"]}),
        "spec.ingress[0].destination.ports[0]",
        "between 1 and 65535",
    ),
    (
        "reversed range",
        ingress(protocol="TCP", destination={"ports": ["2000:1000"]}),
        "spec.ingress[0].destination.ports[0]",
        "reversed",
    ),
    (
        "half range",
        ingress(protocol="TCP", destination={"ports": ["2000:"]}),
        "spec.ingress[0].destination.ports[0]",
        "min:max",
    ),
    (
        "upper-case port name",
        ingress(protocol="TCP", destination={"ports": ["HTTP"]}),
        "spec.ingress[0].destination.ports[0]",
        "lower-case",
    ),
    (
        "port name dashes",
        ingress(protocol="TCP", destination={"ports": ["a--b"]}),
        "spec.ingress[0].destination.ports[0]",
        "'--'",
    ),
    (
        "long port name",
        ingress(protocol="TCP", destination={"ports": ["abcdefghijklmnop"]}),
        "spec.ingress[0].destination.ports[0]",
        "1 to 15",
    ),
    (
        "float port",
        ingress(protocol="TCP", destination={"ports": [80.5]}),
        "spec.ingress[0].destination.ports[0]",
        "a number (80.5)",
    ),
    ("unknown protocol", ingress(protocol="HTTP"), "spec.ingress[0].protocol", "is not a protocol"),
    ("protocol zero", ingress(notProtocol=0), "spec.ingress[0].notProtocol", "is not a protocol"),
    ("protocol 256", ingress(protocol=256), "spec.ingress[0].protocol", "is not a protocol"),
    # ICMP and IP version
    ("icmp code alone", ingress(protocol="ICMP", icmp={"code": 0}), "spec.ingress[0].icmp.code", "needs an ICMP type"),
    (
        "icmp type range",
        ingress(protocol="ICMP", icmp={"type": 255}),
        "spec.ingress[0].icmp.type",
        "out of range 0-254",
    ),
    ("icmp without protocol", ingress(icmp={"type": 8}), "spec.ingress[0].icmp", "protocol ICMP or ICMPv6"),
    ("ip version 5", ingress(ipVersion=5), "spec.ingress[0].ipVersion", "must be 4 or 6"),
    (
        "icmp over ipv6",
        ingress(protocol="ICMP", ipVersion=6),
        "spec.ingress[0].ipVersion",
        "must be 4 with protocol ICMP",
    ),
    ("icmpv6 over ipv4", ingress(notProtocol="ICMPv6", ipVersion=4), "spec.ingress[0].ipVersion", "must be 6"),
    # HTTP
    (
        "http on deny",
        gnp(ingress=[{"action": "Deny", "http": {"methods": ["GET"]}}]),
        "spec.ingress[0].http",
        "only valid in Allow",
    ),
    ("http on egress", egress(http={"methods": ["GET"]}), "spec.egress[0].http", "not allowed in egress"),
    ("http with udp", ingress(protocol="UDP", http={}), "spec.ingress[0].protocol", "need protocol TCP"),
    (
        "http both path kinds",
        ingress(http={"paths": [{"exact": "/a", "prefix": "/b"}]}),
        "spec.ingress[0].http.paths[0]",
        "exactly one",
    ),
    (
        "http relative path",
        ingress(http={"paths": [{"prefix": "api"}]}),
        "spec.ingress[0].http.paths[0]",
        "start with '/'",
    ),
    (
        "http repeated method",
        ingress(http={"methods": ["GET", "GET"]}),
        "spec.ingress[0].http.methods",
        "more than once",
    ),
    # services and service accounts
    (
        "service without name",
        egress(destination={"services": {"namespace": "a"}}),
        "spec.egress[0].destination.services.name",
        "required",
    ),
    (
        "service with selector",
        egress(destination={"services": {"name": "a", "namespace": "b"}, "selector": "x == 'y'"}),
        "spec.egress[0].destination.services",
        "selector",
    ),
    (
        "service with ports",
        egress(protocol="TCP", destination={"services": {"name": "a", "namespace": "b"}, "ports": [80]}),
        "spec.egress[0].destination.services",
        "ports",
    ),
    (
        "service in egress source",
        egress(source={"services": {"name": "a", "namespace": "b"}}),
        "spec.egress[0].source.services",
        "egress",
    ),
    (
        "global service without namespace",
        egress(destination={"services": {"name": "a"}}),
        "spec.egress[0].destination.services.namespace",
        "global policy",
    ),
    # domains
    (
        "domains in source",
        egress(source={"domains": ["a.com"]}),
        "spec.egress[0].source.domains",
        "destination of an egress Allow",
    ),
    (
        "domains in ingress",
        ingress(destination={"domains": ["a.com"]}),
        "spec.ingress[0].destination.domains",
        "ingress Allow",
    ),
    (
        "domains on deny",
        gnp(egress=[{"action": "Deny", "destination": {"domains": ["a.com"]}}]),
        "spec.egress[0].destination.domains",
        "egress Deny",
    ),
    ("wildcard alone", egress(destination={"domains": ["*"]}), "spec.egress[0].destination.domains[0]", "alone"),
    (
        "partial wildcard",
        egress(destination={"domains": ["ok.com", "foo*.com"]}),
        "spec.egress[0].destination.domains[1]",
        "whole label",
    ),
    (
        "two wildcards",
        egress(destination={"domains": ["*.*.com"]}),
        "spec.egress[0].destination.domains[0]",
        "more than one",
    ),
    (
        "empty label",
        egress(destination={"domains": ["a..com"]}),
        "spec.egress[0].destination.domains[0]",
        "empty label",
    ),
    (
        "set domain",
        calico("NetworkSet", namespace="n", allowedEgressDomains=["a.com", "x*"]),
        "spec.allowedEgressDomains[1]",
        "whole label",
    ),
    # names, tiers, namespaces
    (
        "tier prefix mismatch",
        gnp(name="sec.x", tier="security"),
        "metadata.name",
        "does not match spec.tier 'security'",
    ),
    (
        "legacy name without tier",
        calico("GlobalNetworkPolicy", name="platform.x"),
        "metadata.name",
        "add spec.tier: platform",
    ),
    ("two dots", calico("GlobalNetworkPolicy", name="a.b.c", tier="a"), "metadata.name", "more than one '.'"),
    ("upper-case policy name", calico("GlobalNetworkPolicy", name="Web"), "metadata.name", "DNS label"),
    ("tier name with dot", calico("Tier", name="my.tier"), "metadata.name", "DNS label"),
    ("spec.tier not a label", gnp(tier="Platform"), "spec.tier", "DNS label"),
    ("long tier name", calico("Tier", name="t" * 64), "metadata.name", "longer than 63"),
    ("built-in tier order", calico("Tier", name="default", order=5), "spec.order", "must have order 1e+06"),
    ("namespace on global kind", calico("GlobalNetworkSet", namespace="n"), "metadata.namespace", "not namespaced"),
    ("namespace on tier", calico("Tier", name="t", namespace="n"), "metadata.namespace", "not namespaced"),
    ("bad namespace", calico("NetworkSet", namespace="Store_Front"), "metadata.namespace", "DNS label"),
    (
        "missing name",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"labels": {}}},
        "metadata.name",
        "required",
    ),
    ("missing metadata", {"apiVersion": "v1", "kind": "Namespace"}, "metadata.name", "required"),
    # staged policies
    (
        "staged delete with rules",
        calico("StagedNetworkPolicy", namespace="n", stagedAction="Delete", ingress=[]),
        "spec.ingress",
        "stagedAction is Delete",
    ),
    (
        "staged delete with types",
        calico("StagedGlobalNetworkPolicy", stagedAction="Delete", types=["Ingress"]),
        "spec.types",
        "stagedAction is Delete",
    ),
    (
        "staged k8s delete",
        calico(
            "StagedKubernetesNetworkPolicy",
            namespace="n",
            stagedAction="Delete",
            podSelector={"matchLabels": {"a": "b"}},
        ),
        "spec.podSelector",
        "stagedAction is Delete",
    ),
    (
        "bad staged action",
        calico("StagedNetworkPolicy", namespace="n", stagedAction="Maybe"),
        "spec.stagedAction",
        "not one of Set, Delete, Learn, Ignore",
    ),
    # kinds and API versions
    (
        "unknown kind",
        {"apiVersion": "projectcalico.org/v3", "kind": "HostEndpoint", "metadata": {"name": "h"}},
        "kind",
        "unknown kind 'HostEndpoint'",
    ),
    ("missing kind", {"apiVersion": "v1", "metadata": {"name": "h"}}, "kind", "required"),
    ("missing apiVersion", {"kind": "Tier", "metadata": {"name": "t"}}, "apiVersion", "required"),
    (
        "tier in v1",
        {"apiVersion": "v1", "kind": "Tier", "metadata": {"name": "t"}},
        "apiVersion",
        "belongs to projectcalico.org/v3",
    ),
    (
        "policy in apps/v1",
        {"apiVersion": "apps/v1", "kind": "NetworkPolicy", "metadata": {"name": "t"}},
        "apiVersion",
        "networking.k8s.io/v1",
    ),
    (
        "namespace in calico",
        {"apiVersion": "projectcalico.org/v3", "kind": "Namespace", "metadata": {"name": "t"}},
        "apiVersion",
        "belongs to v1",
    ),
    (
        "model kind name",
        {"apiVersion": "projectcalico.org/v3", "kind": "KubernetesNetworkPolicy", "metadata": {"name": "t"}},
        "kind",
        "kind NetworkPolicy",
    ),
    # enumerations
    (
        "lower-case action",
        gnp(ingress=[{"action": "allow"}]),
        "spec.ingress[0].action",
        "not one of Allow, Deny, Pass, Log",
    ),
    ("missing action", gnp(egress=[{"protocol": "TCP"}]), "spec.egress[0].action", "required"),
    (
        "tier default action",
        calico("Tier", name="t", defaultAction="Log"),
        "spec.defaultAction",
        "not one of Deny, Pass",
    ),
    ("policy type", gnp(types=["Ingress", "egress"]), "spec.types[1]", "not one of Ingress, Egress"),
    ("repeated type", gnp(types=["Egress", "Egress"]), "spec.types[1]", "more than once"),
    # value types
    (
        "string for a list",
        ingress(source={"nets": "10.0.0.0/8"}),
        "spec.ingress[0].source.nets",
        "expected a list, got a string",
    ),
    ("list for a mapping", ingress(source=["x"]), "spec.ingress[0].source", "expected a mapping, got a list"),
    ("number for a selector", gnp(selector=5), "spec.selector", "expected a string, got an integer (5) (quote it)"),
    ("string for an order", gnp(order="10"), "spec.order", "expected a number"),
    ("bool for an order", gnp(order=True), "spec.order", "expected a number, got a boolean"),
    ("infinite order", gnp(order=float("inf")), "spec.order", "finite"),
    ("string for a flag", gnp(doNotTrack="yes", applyOnForward=True), "spec.doNotTrack", "expected true or false"),
    (
        "boolean label value",
        calico("GlobalNetworkSet", name="s") | {"metadata": {"name": "s", "labels": {"on": True}}},
        "metadata.labels.on",
        "(quote it)",
    ),
    (
        "bad label key",
        calico("GlobalNetworkSet", name="s") | {"metadata": {"name": "s", "labels": {"-x": "y"}}},
        "metadata.labels.-x",
        "starting and ending alphanumeric",
    ),
    (
        "bad label value",
        calico("GlobalNetworkSet", name="s") | {"metadata": {"name": "s", "labels": {"x": "a b"}}},
        "metadata.labels.x",
        "value 'a b'",
    ),
    (
        "reserved set label",
        calico("NetworkSet", name="s") | {"metadata": {"name": "s", "labels": {"projectcalico.org/namespace": "x"}}},
        "metadata.labels.projectcalico.org/namespace",
        "set by Calico",
    ),
    (
        "unknown field",
        ingress(source={"notnets": ["10.0.0.0/8"]}),
        "spec.ingress[0].source.notnets",
        "did you mean 'notNets'",
    ),
    ("global-only field", np(doNotTrack=True), "spec.doNotTrack", "unknown field"),
    ("unknown top-level field", calico("Tier", name="t") | {"extra": 1}, "extra", "unknown field"),
    # host-endpoint flags
    ("preDNAT and doNotTrack", gnp(preDNAT=True, doNotTrack=True, applyOnForward=True), "spec.preDNAT", "cannot both"),
    ("preDNAT egress", gnp(preDNAT=True, applyOnForward=True, egress=[{"action": "Deny"}]), "spec.preDNAT", "egress"),
    ("doNotTrack alone", gnp(doNotTrack=True), "spec.applyOnForward", "must be true"),
    # Kubernetes NetworkPolicy
    (
        "k8s protocol case",
        knp_port(protocol="tcp", port=80),
        "spec.ingress[0].ports[0].protocol",
        "not one of TCP, UDP, SCTP",
    ),
    ("k8s numeric string port", knp_port(port="80"), "spec.ingress[0].ports[0].port", "at least one letter"),
    ("k8s port zero", knp_port(port=0), "spec.ingress[0].ports[0].port", "out of range 1-65535"),
    ("k8s endPort with name", knp_port(port="http", endPort=90), "spec.ingress[0].ports[0].endPort", "numeric port"),
    ("k8s endPort below port", knp_port(port=90, endPort=80), "spec.ingress[0].ports[0].endPort", "below port 90"),
    ("k8s empty peer", knp_peer(), "spec.egress[0].to[0]", "needs podSelector, namespaceSelector or ipBlock"),
    (
        "k8s ipBlock and selector",
        knp_peer(ipBlock={"cidr": "10.0.0.0/8"}, podSelector={}),
        "spec.egress[0].to[0]",
        "cannot be combined",
    ),
    (
        "k8s cidr without prefix",
        knp_peer(ipBlock={"cidr": "10.0.0.1"}),
        "spec.egress[0].to[0].ipBlock.cidr",
        "not a valid CIDR",
    ),
    (
        "k8s except outside",
        knp_peer(ipBlock={"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24", "10.9.0.0/24"]}),
        "spec.egress[0].to[0].ipBlock.except[1]",
        "strictly inside",
    ),
    (
        "k8s except equal",
        knp_peer(ipBlock={"cidr": "10.0.0.0/16", "except": ["10.0.0.0/16"]}),
        "spec.egress[0].to[0].ipBlock.except[0]",
        "strictly inside",
    ),
    ("k8s missing cidr", knp_peer(ipBlock={"except": []}), "spec.egress[0].to[0].ipBlock.cidr", "required"),
    (
        "k8s In without values",
        knp(podSelector={"matchExpressions": [{"key": "a", "operator": "In"}]}),
        "spec.podSelector.matchExpressions[0].values",
        "must not be empty",
    ),
    (
        "k8s Exists with values",
        knp(podSelector={"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
        "spec.podSelector.matchExpressions[0].values",
        "must be empty",
    ),
    (
        "k8s bad operator",
        knp(podSelector={"matchExpressions": [{"key": "a", "operator": "Equals"}]}),
        "spec.podSelector.matchExpressions[0].operator",
        "not one of In, NotIn",
    ),
    (
        "k8s policy type",
        knp(podSelector={}, policyTypes=["ingress"]),
        "spec.policyTypes[0]",
        "not one of Ingress, Egress",
    ),
    ("k8s calico field", knp(podSelector={}, selector="a == 'b'"), "spec.selector", "unknown field"),
    (
        "unknown performance hint",
        gnp(performanceHints=["AssumeNeededOnSomeNodes"]),
        "spec.performanceHints[0]",
        "not one of AssumeNeededOnEveryNode",
    ),
    ("performance hints not a list", np(performanceHints="AssumeNeededOnEveryNode"), "spec.performanceHints", "list"),
    ("performance hint not a string", np(performanceHints=[1]), "spec.performanceHints[0]", "expected a string"),
    ("k8s performance hints", knp(podSelector={}, performanceHints=[]), "spec.performanceHints", "unknown field"),
    ("k8s without podSelector", knp(ingress=[{}]), "spec.podSelector", "required"),
    (
        "staged k8s without podSelector",
        calico("StagedKubernetesNetworkPolicy", stagedAction="Learn"),
        "spec.podSelector",
        "required",
    ),
]


@pytest.mark.parametrize(("document", "path", "words"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_each_problem_is_reported_at_its_path(document: dict[str, Any], path: str, words: str) -> None:
    issues = issues_of(document)
    assert [issue.path for issue in issues] == [path], issues
    assert words in issues[0].message
    assert issues[0].document == 1


def test_selector_errors_carry_the_parsers_message_and_name_the_resource() -> None:
    selector = "app == 'x' && (tier == 'y'"
    policy = calico(
        "NetworkPolicy", name="backend", namespace="storefront", egress=[{"action": "Deny"}, {"action": "Allow"}]
    )
    policy["spec"]["egress"][1]["destination"] = {"selector": selector}
    with pytest.raises(SelectorError) as expected:
        parse_selector(selector)
    (issue,) = issues_of(calico("Tier", name="security"), policy)
    assert str(issue) == (
        f"document 2 (NetworkPolicy storefront/backend): spec.egress[1].destination.selector: {expected.value}"
    )
    assert (issue.document, issue.kind, issue.namespace, issue.name) == (2, "NetworkPolicy", "storefront", "backend")
    assert issue.position == expected.value.position


def test_one_bad_document_fails_the_batch_and_every_problem_is_listed() -> None:
    good = calico("Tier", name="security")
    bad_selector = gnp(selector="(")
    bad_rule = np(ingress=[{"action": "Nope", "source": {"nets": ["x"]}}])
    with pytest.raises(ManifestError) as raised:
        load_manifests(yaml.safe_dump_all([good, bad_selector, bad_rule]))
    error = raised.value
    assert [issue.position for issue in error.errors] == [1, None, None]
    assert [(issue.document, issue.path) for issue in error.errors] == [
        (2, "spec.selector"),
        (3, "spec.ingress[0].action"),
        (3, "spec.ingress[0].source.nets[0]"),
    ]
    text = str(error)
    assert text.startswith("3 errors:\n")
    assert all(str(issue) in text for issue in error.errors)
    assert "document 3 (NetworkPolicy storefront/p): spec.ingress[0].action" in text


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (calico("Tier", name="t"), calico("Tier", name="t", order=5)),
        (calico("NetworkPolicy", name="api"), calico("NetworkPolicy", name="default.api")),
        (calico("NetworkPolicy", name="api", tier="web"), calico("NetworkPolicy", name="web.api", tier="web")),
        (calico("NetworkPolicy", name="api"), calico("NetworkPolicy", name="api", namespace="default")),
        (calico("GlobalNetworkSet", name="s"), calico("GlobalNetworkSet", name="s")),
    ],
)
def test_duplicate_resources_are_refused(first: dict[str, Any], second: dict[str, Any]) -> None:
    issues = issues_of(first, second)
    assert [(issue.document, issue.path) for issue in issues] == [(2, "metadata.name")]
    assert "already defined by document 1" in issues[0].message


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (calico("NetworkPolicy", name="api"), calico("NetworkPolicy", name="api", namespace="other")),
        (calico("NetworkPolicy", name="api"), calico("StagedNetworkPolicy", name="api")),
        (calico("NetworkPolicy", name="api"), calico("NetworkPolicy", name="web.api", tier="web")),
        (calico("NetworkPolicy", name="api"), knp(podSelector={}) | {"metadata": {"name": "api"}}),
    ],
)
def test_same_names_of_different_resources_are_fine(first: dict[str, Any], second: dict[str, Any]) -> None:
    assert len(load_manifests(yaml.safe_dump_all([first, second]))) == 2


@pytest.mark.parametrize(
    ("text", "document", "position"),
    [
        ("kind: Tier\nmetadata:\n  name: a\n   bad: 1\n", 1, "line 4, column 7"),
        ("kind: Tier\n---\nmetadata: {name: [}\n", 2, "line 3, column 19"),
        ("a: 1\nb: 2\na: 3\n", 1, "line 3, column 1"),
        ('{"kind": "Tier",\n "metadata": }', 1, "line 2, column 14"),
    ],
)
def test_syntax_errors_name_the_document_line_and_column(text: str, document: int, position: str) -> None:
    with pytest.raises(ManifestError) as raised:
        load_manifests(text)
    (issue,) = raised.value.errors
    assert issue.document == document
    assert position in issue.message


def test_problems_inside_a_list_carry_the_item_path() -> None:
    listing = {"apiVersion": "v1", "kind": "List", "items": [calico("Tier", name="t"), gnp(order="x")]}
    with pytest.raises(ManifestError) as raised:
        load_manifests(json.dumps(listing))
    (issue,) = raised.value.errors
    assert (issue.document, issue.path, issue.kind) == (1, "items[1].spec.order", "GlobalNetworkPolicy")


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        ({"apiVersion": "v1", "kind": "List", "items": {"a": 1}}, "items", "expected a list"),
        ({"apiVersion": "v1", "kind": "List", "items": [{"kind": "List"}]}, "items[0].kind", "List inside a List"),
        ({"apiVersion": "v1", "kind": "List", "items": [], "bogus": 1}, "bogus", "unknown field"),
    ],
)
def test_malformed_lists(body: dict[str, Any], path: str, words: str) -> None:
    issues = issues_of(body)
    assert [issue.path for issue in issues] == [path]
    assert words in issues[0].message


def test_a_document_that_is_not_a_mapping() -> None:
    with pytest.raises(ManifestError) as raised:
        load_manifests("- a\n- b\n---\njust text\n")
    assert [(issue.document, issue.path) for issue in raised.value.errors] == [(1, ""), (2, "")]
    assert "got a list" in raised.value.errors[0].message
    assert "got a string ('just text')" in raised.value.errors[1].message


def test_resource_from_dict_reports_and_refuses_lists() -> None:
    with pytest.raises(ManifestError) as raised:
        resource_from_dict(gnp(types=["Sideways"]))
    assert [issue.path for issue in raised.value.errors] == ["spec.types[0]"]
    with pytest.raises(ManifestError, match="use load_manifests"):
        resource_from_dict({"apiVersion": "v1", "kind": "List", "items": []})


def test_numeric_resource_version_is_read_as_text() -> None:
    policy = resource_from_dict(gnp() | {"metadata": {"name": "p", "resourceVersion": 123}})
    assert policy.metadata.resource_version == "123"
