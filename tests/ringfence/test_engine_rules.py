"""Rule criteria (calico.md section 3, points 5-7): scoping, endpoint kinds, network sets, ports, protocols.

Each case puts one rule in a probe tier (default action Pass) ahead of a tier that allows everything,
so the verdict tells whether the rule matched: a Deny rule gives ``deny`` when it matches, ``allow``
when it does not and ``uncertain`` when the record cannot tell.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_engine_support import (
    ALL_TYPES,
    flow,
    global_set,
    gnp,
    host,
    namespace,
    net,
    network_set,
    np,
    pod,
    ports,
    rule,
    set_endpoint,
    tier,
)

from ringfence.engine import PolicyEngine
from ringfence.flows.record import Endpoint
from ringfence.model import EntityRule, HTTPMatch, ICMPFields, Resource, ServiceAccountMatch, ServiceMatch

MATCH, NO_MATCH, UNCERTAIN = "match", "no match", "uncertain"
_OUTCOME = {"deny": MATCH, "allow": NO_MATCH, "uncertain": UNCERTAIN}

WORLD: list[Resource] = [
    namespace("shop", team="blue"),
    namespace("blog", team="green"),
    global_set("partners", ["203.0.113.0/24"], type="partner"),
    global_set("quarantined", ["10.9.9.9/32"], quarantine="true"),
    network_set("backup", "shop", ["192.0.2.0/28"], role="backup"),
    network_set("archive", "blog", ["192.0.2.128/28"], role="backup"),
]
WEB = pod("shop", {"app": "web"}, ip="10.0.0.5")


def outcome(
    probe_rule: Any,
    source: Endpoint,
    dest: Endpoint,
    *,
    policy_namespace: str | None = None,
    reporter: str = "src",
    extra: tuple[Resource, ...] = (),
    **flow_fields: Any,
) -> str:
    """Whether ``probe_rule`` (a Deny rule) matches the record, in a namespaced policy when asked."""
    direction = "egress" if reporter == "src" else "ingress"
    fields = {direction: [probe_rule], "types": ALL_TYPES, "tier_name": "probe"}
    probe = np("probe.p", policy_namespace, **fields) if policy_namespace else gnp("probe.p", **fields)
    resources = [
        *WORLD,
        *extra,
        tier("probe", 1, "Pass"),
        tier("fallback", 2, "Deny"),
        gnp("fallback.allow", tier_name="fallback", types=ALL_TYPES, ingress=[rule()], egress=[rule()]),
        probe,
    ]
    verdict = PolicyEngine(resources).evaluate(flow(source, dest, reporter=reporter, **flow_fields))
    return _OUTCOME[verdict.action]


def to(**entity: Any) -> Any:
    return rule("Deny", destination=EntityRule(**entity))


def from_(**entity: Any) -> Any:
    return rule("Deny", source=EntityRule(**entity))


@pytest.mark.parametrize(
    ("entity", "dest", "expected"),
    [
        pytest.param({"selector": "app == 'db'"}, pod("shop", {"app": "db"}), MATCH, id="selector-same-namespace"),
        pytest.param({"selector": "app == 'db'"}, pod("blog", {"app": "db"}), NO_MATCH, id="selector-other-namespace"),
        pytest.param(
            {"selector": "app == 'db'", "namespace_selector": "team == 'green'"},
            pod("blog", {"app": "db"}),
            MATCH,
            id="namespace-selector-opens-other-namespaces",
        ),
        pytest.param(
            {"selector": "app == 'db'", "namespace_selector": "all()"},
            pod("blog", {"app": "db"}),
            MATCH,
            id="all-namespaces",
        ),
        pytest.param(
            {"namespace_selector": "all()"}, host({"app": "db"}, ip="192.0.2.50"), NO_MATCH, id="all-not-hosts"
        ),
        pytest.param({"namespace_selector": "global()"}, host({}, ip="192.0.2.50"), MATCH, id="global-hosts"),
        pytest.param({"namespace_selector": "global()"}, pod("blog", {"app": "db"}), NO_MATCH, id="global-not-pods"),
        pytest.param(
            {"namespace_selector": "global()", "selector": "type == 'partner'"},
            net("203.0.113.9"),
            MATCH,
            id="global-sets-through-global",
        ),
        pytest.param({"selector": "type == 'partner'"}, net("203.0.113.9"), NO_MATCH, id="global-set-invisible"),
        pytest.param({"selector": "role == 'backup'"}, net("192.0.2.3"), MATCH, id="own-namespace-set"),
        pytest.param({"selector": "role == 'backup'"}, net("192.0.2.130"), NO_MATCH, id="other-namespace-set"),
        pytest.param({"nets": ("10.1.0.0/16",)}, pod("blog", {}, ip="10.1.2.3"), MATCH, id="nets-not-scoped"),
        pytest.param({"not_selector": "app == 'db'"}, pod("blog", {"app": "web"}), NO_MATCH, id="not-selector-scoped"),
        pytest.param({"not_selector": "app == 'db'"}, pod("shop", {"app": "web"}), MATCH, id="not-selector-other-app"),
        pytest.param({"not_selector": "app == 'db'"}, pod("shop", {"app": "db"}), NO_MATCH, id="not-selector-excludes"),
        pytest.param(
            {"selector": "app == 'db'", "not_selector": "quarantine == 'true'"},
            pod("shop", {"app": "db"}, ip="10.9.9.9"),
            NO_MATCH,
            id="not-selector-sees-global-sets",
        ),
        pytest.param(
            {"selector": "app == 'db'", "not_selector": "quarantine == 'true'"},
            pod("shop", {"app": "db"}, ip="10.9.9.8"),
            MATCH,
            id="not-selector-outside-set",
        ),
        pytest.param(
            {"service_accounts": ServiceAccountMatch(names=("api",))},
            pod("shop", {}, service_account="api"),
            MATCH,
            id="service-account-same-namespace",
        ),
        pytest.param(
            {"service_accounts": ServiceAccountMatch(names=("api",))},
            pod("blog", {}, service_account="api"),
            NO_MATCH,
            id="service-account-other-namespace",
        ),
        pytest.param(
            {"service_accounts": ServiceAccountMatch(names=("api",)), "namespace_selector": "all()"},
            pod("blog", {}, service_account="api"),
            MATCH,
            id="service-account-any-namespace",
        ),
    ],
)
def test_rule_scoping_in_a_namespaced_policy(entity: dict[str, Any], dest: Endpoint, expected: str) -> None:
    assert outcome(to(**entity), WEB, dest, policy_namespace="shop") == expected


@pytest.mark.parametrize(
    ("entity", "dest", "expected"),
    [
        pytest.param({"selector": "app == 'db'"}, pod("blog", {"app": "db"}), MATCH, id="selector-any-namespace"),
        pytest.param({"selector": "type == 'partner'"}, net("203.0.113.9"), MATCH, id="global-set"),
        pytest.param({"selector": "role == 'backup'"}, net("192.0.2.130"), MATCH, id="namespaced-set"),
        pytest.param({"namespace_selector": "global()"}, net("203.0.113.9"), MATCH, id="global-set-is-global"),
        pytest.param({"namespace_selector": "global()"}, net("192.0.2.130"), NO_MATCH, id="namespaced-set-not-global"),
        pytest.param(
            {"namespace_selector": "all()", "selector": "role == 'backup'"},
            net("192.0.2.3"),
            MATCH,
            id="sets-have-namespaces",
        ),
        pytest.param({"namespace_selector": "team == 'green'"}, net("192.0.2.130"), MATCH, id="set-namespace-labels"),
        pytest.param({"selector": "role == 'node'"}, host({"role": "node"}, ip="192.0.2.77"), MATCH, id="host-labels"),
        pytest.param({"selector": "type == 'partner'"}, net("198.51.100.1"), NO_MATCH, id="outside-every-set"),
    ],
)
def test_rule_selectors_in_a_global_policy(entity: dict[str, Any], dest: Endpoint, expected: str) -> None:
    assert outcome(to(**entity), WEB, dest) == expected


@pytest.mark.parametrize(
    ("entity", "dest", "expected"),
    [
        # a network-set endpoint without IP matches by the named set's labels
        pytest.param({"selector": "type == 'partner'"}, set_endpoint("partners"), MATCH, id="ns-global-set-labels"),
        pytest.param({"selector": "role == 'backup'"}, set_endpoint("backup", "shop"), MATCH, id="ns-namespaced-set"),
        pytest.param(
            {"selector": "role == 'backup'", "namespace_selector": "projectcalico.org/name == 'blog'"},
            set_endpoint("archive", "blog"),
            MATCH,
            id="ns-set-namespace",
        ),
        pytest.param(
            {"selector": "kind == 'saas'"},
            set_endpoint("unknown-set", kind="saas"),
            MATCH,
            id="ns-unknown-set-record-labels",
        ),
        # ... and a CIDR criterion against the named set's own nets
        pytest.param({"nets": ("203.0.0.0/16",)}, set_endpoint("partners"), MATCH, id="ns-nets-inside"),
        pytest.param({"nets": ("10.0.0.0/8",)}, set_endpoint("partners"), NO_MATCH, id="ns-nets-disjoint"),
        pytest.param({"nets": ("203.0.113.0/25",)}, set_endpoint("partners"), UNCERTAIN, id="ns-nets-partly"),
        pytest.param({"nets": ("10.0.0.0/8",)}, set_endpoint("unknown-set"), UNCERTAIN, id="ns-unknown-set-nets"),
        # with an IP, the address decides, through every set containing it
        pytest.param({"selector": "type == 'partner'"}, set_endpoint("partners", ip="203.0.113.4"), MATCH, id="ns-ip"),
        pytest.param(
            {"selector": "type == 'partner'"}, set_endpoint("partners", ip="198.51.100.4"), NO_MATCH, id="ns-ip-left"
        ),
        # external addresses
        pytest.param({"nets": ("198.51.100.0/24",)}, net("198.51.100.7"), MATCH, id="net-ip-in-nets"),
        pytest.param({"not_nets": ("198.51.100.0/24",)}, net("198.51.100.7"), NO_MATCH, id="net-ip-in-not-nets"),
        pytest.param({"nets": ("10.0.0.0/8",)}, net(name_aggr="pub"), NO_MATCH, id="pub-never-private"),
        pytest.param({"nets": ("0.0.0.0/0",)}, net(name_aggr="pub"), UNCERTAIN, id="pub-aggregated-ip"),
        pytest.param(
            {"nets": ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")},
            net(name_aggr="pvt"),
            MATCH,
            id="pvt-covered",
        ),
        pytest.param({"selector": "type == 'partner'"}, net(name_aggr="pub"), UNCERTAIN, id="pub-may-be-in-set"),
        pytest.param({"selector": "type == 'partner'"}, net(name_aggr="pvt"), NO_MATCH, id="pvt-not-in-public-set"),
        # pods and hosts: by IP when the record has it, never by CIDR without
        pytest.param({"nets": ("10.0.0.0/8",)}, pod("blog", {}), NO_MATCH, id="pod-without-ip"),
        pytest.param({"not_nets": ("10.0.0.0/8",)}, pod("blog", {}), MATCH, id="pod-without-ip-not-nets"),
        pytest.param({"selector": "type == 'partner'"}, pod("blog", {}, ip="203.0.113.8"), MATCH, id="pod-ip-in-set"),
        pytest.param({"nets": ("192.0.2.0/24",)}, host({}, ip="192.0.2.77"), MATCH, id="host-ip"),
        pytest.param({"nets": ("192.0.2.0/24",)}, host({}), NO_MATCH, id="host-without-ip"),
    ],
)
def test_endpoint_kinds_and_network_sets(entity: dict[str, Any], dest: Endpoint, expected: str) -> None:
    assert outcome(to(**entity), WEB, dest) == expected


@pytest.mark.parametrize(
    ("selector", "named", "expected"),
    [
        # Calico names a set endpoint after the longest-prefix set holding the address, so the address is
        # also in every set whose CIDRs contain the named set's (here "public" contains all of "aws")
        pytest.param("type == 'public'", "aws", MATCH, id="containing-set"),
        pytest.param("type == 'aws'", "aws", MATCH, id="named-set"),
        # the address may be in the narrower "aws" range or elsewhere in "public"
        pytest.param("type == 'aws'", "public", UNCERTAIN, id="narrower-set"),
        pytest.param("type == 'partner'", "aws", NO_MATCH, id="disjoint-set"),
    ],
)
def test_a_set_endpoint_without_ip_belongs_to_the_sets_around_it(selector: str, named: str, expected: str) -> None:
    sets = (global_set("public", ["0.0.0.0/0"], type="public"), global_set("aws", ["52.0.0.0/8"], type="aws"))
    assert outcome(to(selector=selector), WEB, set_endpoint(named, port=443), extra=sets) == expected


def test_an_address_matches_through_every_network_set_containing_it() -> None:
    sets = (global_set("public", ["0.0.0.0/0"], type="public"), global_set("aws", ["52.0.0.0/8"], type="aws"))
    address = net("52.1.2.3")
    assert outcome(to(selector="type == 'public'"), WEB, address, extra=sets) == MATCH
    assert outcome(to(selector="type == 'aws'"), WEB, address, extra=sets) == MATCH
    assert outcome(to(selector="type == 'aws'"), WEB, net("53.1.2.3"), extra=sets) == NO_MATCH


@pytest.mark.parametrize(
    ("probe", "flow_proto", "dest", "expected"),
    [
        pytest.param(rule("Deny", protocol="TCP"), "tcp", net("198.51.100.7", port=443), MATCH, id="tcp"),
        pytest.param(rule("Deny", protocol="TCP"), "udp", net("198.51.100.7", port=443), NO_MATCH, id="tcp-vs-udp"),
        pytest.param(rule("Deny", protocol=6), "tcp", net("198.51.100.7", port=443), MATCH, id="number-vs-name"),
        pytest.param(rule("Deny", protocol="UDPLite"), "136", net("198.51.100.7"), MATCH, id="udplite"),
        pytest.param(rule("Deny", protocol="SCTP"), "sctp", net("198.51.100.7"), MATCH, id="sctp"),
        pytest.param(rule("Deny", protocol="ICMPv6"), "icmpv6", net("2001:db8::1"), MATCH, id="icmpv6"),
        pytest.param(rule("Deny", protocol="ICMP"), "icmpv6", net("2001:db8::1"), NO_MATCH, id="icmp-vs-icmpv6"),
        pytest.param(rule("Deny", not_protocol="UDP"), "tcp", net("198.51.100.7"), MATCH, id="not-protocol"),
        pytest.param(
            rule("Deny", not_protocol="UDP"), "udp", net("198.51.100.7"), NO_MATCH, id="not-protocol-excludes"
        ),
        pytest.param(to(ports=ports(80, (8000, 8080))), "tcp", net("198.51.100.7", port=8080), MATCH, id="range-end"),
        pytest.param(to(ports=ports(80, (8000, 8080))), "tcp", net("198.51.100.7", port=80), MATCH, id="single-port"),
        pytest.param(to(ports=ports(80, (8000, 8080))), "tcp", net("198.51.100.7", port=8081), NO_MATCH, id="outside"),
        pytest.param(to(not_ports=ports(22)), "tcp", net("198.51.100.7", port=22), NO_MATCH, id="not-ports"),
        pytest.param(to(not_ports=ports(22)), "tcp", net("198.51.100.7", port=23), MATCH, id="not-ports-other"),
        pytest.param(to(ports=ports("http")), "tcp", pod("shop", {}, port=8080), UNCERTAIN, id="named-port-pod"),
        pytest.param(to(ports=ports("http")), "tcp", net("198.51.100.7", port=80), NO_MATCH, id="named-port-external"),
        pytest.param(to(not_ports=ports("http")), "tcp", net("198.51.100.7", port=80), MATCH, id="not-named-external"),
        pytest.param(to(ports=ports("http", 80)), "tcp", pod("shop", {}, port=80), MATCH, id="named-or-number"),
        pytest.param(to(ports=ports(443)), "tcp", net("198.51.100.7"), UNCERTAIN, id="aggregated-port"),
        pytest.param(from_(ports=ports(1000)), "tcp", net("198.51.100.7", port=443), UNCERTAIN, id="source-port-gone"),
        pytest.param(
            rule("Deny", protocol="ICMP", icmp=ICMPFields(type=8)), "icmp", net("198.51.100.7"), UNCERTAIN, id="icmp"
        ),
        pytest.param(
            rule("Deny", protocol="ICMP", icmp=ICMPFields(type=8)), "tcp", net("198.51.100.7"), NO_MATCH, id="icmp-tcp"
        ),
        pytest.param(
            rule("Deny", not_icmp=ICMPFields(type=8), protocol="ICMP"),
            "icmp",
            net("198.51.100.7"),
            UNCERTAIN,
            id="not-icmp",
        ),
        pytest.param(rule("Deny", ip_version=6), "tcp", net("198.51.100.7"), NO_MATCH, id="ipv6-vs-v4"),
        pytest.param(rule("Deny", ip_version=4), "tcp", net("198.51.100.7"), MATCH, id="ipv4"),
        pytest.param(rule("Deny", ip_version=4), "tcp", pod("shop", {}), UNCERTAIN, id="ip-version-unknown"),
        pytest.param(rule("Deny", http=HTTPMatch(methods=("GET",))), "tcp", net("198.51.100.7"), UNCERTAIN, id="http"),
        pytest.param(
            rule("Deny", http=HTTPMatch(methods=("GET",))), "udp", net("198.51.100.7"), NO_MATCH, id="http-udp"
        ),
    ],
)
def test_protocols_ports_icmp_ip_version_http(probe: Any, flow_proto: str, dest: Endpoint, expected: str) -> None:
    source = pod("shop", {"app": "web"}) if dest.ip is None else WEB
    assert outcome(probe, source, dest, proto=flow_proto) == expected


def test_source_ports_match_when_the_record_has_them() -> None:
    source = pod("shop", {"app": "web"}, ip="10.0.0.5", port=1000)
    assert outcome(from_(ports=ports(1000)), source, net("198.51.100.7", port=443)) == MATCH
    assert outcome(from_(ports=ports(1001)), source, net("198.51.100.7", port=443)) == NO_MATCH


@pytest.mark.parametrize(
    ("accounts", "dest", "expected"),
    [
        pytest.param(ServiceAccountMatch(names=("api",)), pod("shop", {}, service_account="api"), MATCH, id="name"),
        pytest.param(ServiceAccountMatch(names=("api",)), pod("shop", {}, service_account="web"), NO_MATCH, id="other"),
        pytest.param(ServiceAccountMatch(names=("api",)), pod("shop", {}), UNCERTAIN, id="name-unknown"),
        pytest.param(
            ServiceAccountMatch(selector="team == 'x'"), pod("shop", {}, service_account="api"), UNCERTAIN, id="labels"
        ),
        pytest.param(ServiceAccountMatch(selector="all()"), pod("shop", {}, service_account="api"), MATCH, id="all"),
        pytest.param(
            ServiceAccountMatch(selector="team == 'x'"), host({}, ip="192.0.2.9"), NO_MATCH, id="host-has-none"
        ),
        pytest.param(
            ServiceAccountMatch(names=("api",), selector="team == 'x'"),
            pod("shop", {}, service_account="web"),
            NO_MATCH,
            id="wrong-name-decides",
        ),
    ],
)
def test_service_accounts(accounts: ServiceAccountMatch, dest: Endpoint, expected: str) -> None:
    assert outcome(to(service_accounts=accounts), WEB, dest) == expected


@pytest.mark.parametrize(
    ("service_account_selector", "subject", "expected"),
    [
        pytest.param("all()", pod("shop", {"app": "web"}), MATCH, id="pods-have-one"),
        pytest.param("all()", host({"app": "web"}), NO_MATCH, id="hosts-have-none"),
        pytest.param("team == 'x'", pod("shop", {"app": "web"}), UNCERTAIN, id="labels-not-in-flows"),
    ],
)
def test_policy_service_account_selector(service_account_selector: str, subject: Endpoint, expected: str) -> None:
    policy = gnp("probe.p", tier_name="probe", service_account_selector=service_account_selector, egress=[rule("Deny")])
    resources = [
        tier("probe", 1, "Pass"),
        tier("fallback", 2, "Deny"),
        gnp("fallback.allow", tier_name="fallback", egress=[rule()]),
        policy,
    ]
    verdict = PolicyEngine(resources).evaluate(flow(subject, net("198.51.100.7", port=443)))
    assert _OUTCOME[verdict.action] == expected


def test_destination_services() -> None:
    probe = to(services=ServiceMatch("db"))
    db = pod("shop", {"app": "db"}, port=5432)
    assert outcome(probe, WEB, db, policy_namespace="shop", service=("shop", "db")) == MATCH
    assert outcome(probe, WEB, db, policy_namespace="shop", service=("blog", "db")) == UNCERTAIN
    assert outcome(probe, WEB, db, policy_namespace="shop") == UNCERTAIN


ALLOW, DENY = "allow", "deny"


def allowed(rule_: Any, dest: Endpoint, domains: tuple[str, ...], extra: tuple[Resource, ...] = ()) -> str:
    """Egress verdict when ``rule_`` is the only allow before a deny-all tier end."""
    resources = [*WORLD, *extra, gnp("default.p", egress=[rule_])]
    return PolicyEngine(resources).evaluate(flow(WEB, dest, domains=domains)).action


@pytest.mark.parametrize(
    ("domains", "dest", "expected"),
    [
        (("api.twilio.com",), net("52.0.0.1", port=443), ALLOW),
        (("a.b.twilio.com",), net("52.0.0.1", port=443), ALLOW),
        (("API.Twilio.COM.",), net("52.0.0.1", port=443), ALLOW),
        (("twilio.com",), net("52.0.0.1", port=443), DENY),
        (("api.twilio.com.evil.io",), net("52.0.0.1", port=443), DENY),
        ((), net("52.0.0.1", port=443), DENY),
        (("example.org", "api.twilio.com"), net("52.0.0.1", port=443), ALLOW),
        (("api.twilio.com",), pod("blog", {}, port=443), DENY),  # a destination inside the cluster never matches
    ],
)
def test_egress_domains(domains: tuple[str, ...], dest: Endpoint, expected: str) -> None:
    assert allowed(rule("Allow", destination=EntityRule(domains=("*.twilio.com",))), dest, domains) == expected


def test_network_set_allowed_egress_domains_count_for_egress_allow_only() -> None:
    saas = (global_set("saas", ["198.18.0.0/24"], ["*.example.com"], kind="saas"),)
    outside = net("52.0.0.1", port=443)
    select = EntityRule(selector="kind == 'saas'")
    assert allowed(rule("Allow", destination=select), outside, ("api.example.com",), saas) == ALLOW
    assert allowed(rule("Allow", destination=select), outside, ("api.example.net",), saas) == DENY
    assert allowed(rule("Allow", destination=select), net("198.18.0.9", port=443), (), saas) == ALLOW
    deny_then_allow = [gnp("default.p", egress=[rule("Deny", destination=select), rule("Allow")]), *saas]
    verdict = PolicyEngine([*WORLD, *deny_then_allow]).evaluate(flow(WEB, outside, domains=("api.example.com",)))
    assert verdict.action == ALLOW
