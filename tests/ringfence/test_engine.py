"""Tier evaluation (calico.md section 3, points 1-4): order, skipping, actions, end of tier, profiles."""

from __future__ import annotations

import pytest
from test_engine_support import (
    ALL_TYPES,
    allow_to,
    deny_to,
    egress,
    flow,
    gnp,
    host,
    ingress,
    namespace,
    net,
    np,
    pod,
    ports,
    rule,
    tier,
)

from ringfence.engine import NotACalicoEndpointError, PolicyCompileError, PolicyEngine, PolicyUnavailableError
from ringfence.flows.hits import parse_hits
from ringfence.flows.record import Endpoint, Reporter
from ringfence.model import PolicyType

WEB = pod("shop", {"app": "web"}, ip="10.0.0.5")
EXTERNAL = net("198.51.100.7", port=443)


def trace_tiers(trace: tuple[str, ...]) -> list[str]:
    return [hit.split("|")[1] for hit in trace]


def test_tiers_run_in_order_missing_order_last_ties_by_name() -> None:
    resources = [
        tier("zulu", 10, "Pass"),
        tier("alpha", 10, "Pass"),
        tier("unordered", None, "Pass"),
        tier("early", 5, "Pass"),
    ]
    resources += [
        gnp(f"{name}.pass-all", tier_name=name, egress=[rule("Pass")])
        for name in ("zulu", "alpha", "unordered", "early", "default")
    ]
    verdict = egress(resources, WEB, EXTERNAL)
    assert trace_tiers(verdict.trace) == ["early", "alpha", "zulu", "default", "unordered", "__PROFILE__"]
    assert verdict.action == "allow"


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [
        ((1, "zeta", "Allow"), (2, "alpha", "Deny"), "allow"),  # order beats name
        ((5, "bravo", "Allow"), (5, "alpha", "Deny"), "deny"),  # equal order: name decides
        ((None, "alpha", "Allow"), (100, "zeta", "Deny"), "deny"),  # missing order sorts last
        ((None, "bravo", "Allow"), (None, "alpha", "Deny"), "deny"),  # both missing: name decides
        ((0.5, "bravo", "Allow"), (1, "alpha", "Deny"), "allow"),  # orders are floats
    ],
)
def test_policies_run_by_order_then_name(first: tuple, second: tuple, winner: str) -> None:
    resources = [gnp(f"default.{name}", order=order, egress=[rule(action)]) for order, name, action in (first, second)]
    assert egress(resources, WEB, EXTERNAL).action == winner


def test_tier_without_applicable_policy_is_skipped_with_its_default_action() -> None:
    resources = [
        tier("strict", 10, "Deny"),
        gnp("strict.others", tier_name="strict", selector="app == 'db'", egress=[rule("Allow")]),
    ]
    verdict = egress(resources, WEB, EXTERNAL)
    assert verdict.action == "allow"
    assert verdict.trace == ("0|__PROFILE__|__PROFILE__.kns.shop|allow|0",)


@pytest.mark.parametrize(
    ("rules", "action", "trace"),
    [
        ([rule("Allow")], "allow", ["0|default|default.p|allow|0"]),
        ([rule("Deny")], "deny", ["0|default|default.p|deny|0"]),
        ([rule("Log"), rule("Deny")], "deny", ["0|default|default.p|deny|1"]),  # Log records nothing, continues
        ([deny_to(ports=ports(22)), rule("Allow")], "allow", ["0|default|default.p|allow|1"]),  # first match decides
        (
            [rule("Allow", protocol="UDP"), rule("Log")],
            "deny",
            ["0|default|default.p|deny|-1"],
        ),  # no match: tier default
    ],
)
def test_first_matching_rule_decides(rules: list, action: str, trace: list[str]) -> None:
    resources = [gnp("default.p", egress=rules)]
    verdict = egress(resources, WEB, EXTERNAL)
    assert (verdict.action, list(verdict.trace)) == (action, trace)


def test_pass_jumps_to_the_next_tier_skipping_the_rest_of_its_tier() -> None:
    resources = [
        tier("security", 100, "Deny"),
        gnp("security.pass", tier_name="security", order=1, egress=[rule("Pass")]),
        gnp("security.deny", tier_name="security", order=2, egress=[rule("Deny")]),
        np("default.allow", "shop", egress=[rule("Allow")]),
    ]
    verdict = egress(resources, WEB, EXTERNAL)
    assert verdict.trace == ("0|security|security.pass|pass|0", "1|default|shop/default.allow|allow|0")


def test_end_of_tier_hit_names_the_first_policy_that_selected_the_endpoint() -> None:
    resources = [
        tier("platform", 200, "Deny"),
        gnp("platform.db-only", tier_name="platform", order=1, selector="app == 'db'", egress=[rule("Allow")]),
        gnp(
            "platform.web", tier_name="platform", order=2, selector="app == 'web'", egress=[allow_to(ports=ports(5432))]
        ),
        gnp("platform.all", tier_name="platform", order=3, egress=[allow_to(ports=ports(5433))]),
    ]
    verdict = egress(resources, WEB, EXTERNAL)
    assert verdict.action == "deny"
    assert verdict.trace == ("0|platform|platform.web|deny|-1",)


def test_pass_default_action_continues_with_the_next_tier() -> None:
    resources = [
        tier("platform", 200, "Pass"),
        gnp("platform.web", tier_name="platform", egress=[allow_to(ports=ports(5432))]),
    ]
    verdict = egress(resources, WEB, EXTERNAL)
    assert verdict.trace == ("0|platform|platform.web|pass|-1", "1|__PROFILE__|__PROFILE__.kns.shop|allow|0")


def test_policy_selecting_a_direction_without_rules_default_denies_it() -> None:
    resources = [np("default.isolate", "shop", types=ALL_TYPES, ingress=[rule("Allow")])]
    verdict = egress(resources, WEB, EXTERNAL)
    assert (verdict.action, verdict.trace) == ("deny", ("0|default|shop/default.isolate|deny|-1",))


def test_policy_types_limit_the_direction() -> None:
    resources = [gnp("default.egress-only", types=[PolicyType.EGRESS], egress=[rule("Deny")])]
    assert ingress(resources, EXTERNAL, WEB).action == "allow"
    assert egress(resources, WEB, EXTERNAL).action == "deny"


def test_host_endpoint_without_policy_has_no_profile_and_is_denied() -> None:
    verdict = ingress([], EXTERNAL, host({"role": "node"}, ip="192.0.2.1"))
    assert (verdict.action, verdict.trace) == ("deny", ("0|__PROFILE__|__PROFILE__|deny|-1",))
    # the trace the engine writes is one the flow-log reader takes back
    assert parse_hits(verdict.trace) == verdict.hits


def test_default_tier_exists_without_a_resource_and_can_be_redefined() -> None:
    policies = [np("default.web", "shop", egress=[allow_to(ports=ports(5432))])]
    assert egress(policies, WEB, EXTERNAL).action == "deny"
    assert egress([*policies, tier("default", 1_000_000, "Pass")], WEB, EXTERNAL).action == "allow"


@pytest.mark.parametrize(
    ("tier_name", "order", "expected_tiers"),
    [
        # Calico 3.30+ creates kube-admin (order 1000, Pass) and kube-baseline (10,000,000, Pass) itself
        ("kube-admin", 1000.0, ["security", "kube-admin", "default", "__PROFILE__"]),
        ("kube-baseline", 10_000_000.0, ["security", "default", "kube-baseline", "__PROFILE__"]),
    ],
)
def test_built_in_kube_tiers_exist_without_a_resource(tier_name: str, order: float, expected_tiers: list[str]) -> None:
    resources = [
        tier("security", 100, "Pass"),
        gnp("security.pass", tier_name="security", egress=[rule("Pass")]),
        gnp(f"{tier_name}.watch", tier_name=tier_name, egress=[rule("Pass", protocol="UDP")]),
        gnp("default.pass", egress=[rule("Pass")]),
    ]
    verdict = egress(resources, WEB, EXTERNAL)  # TCP: the built-in tier's policy does not match, its Pass applies
    assert trace_tiers(verdict.trace) == expected_tiers
    position = expected_tiers.index(tier_name)
    assert verdict.trace[position] == f"{position}|{tier_name}|{tier_name}.watch|pass|-1"
    engine = PolicyEngine(resources)
    assert [t.order for t in engine.tiers if t.name == tier_name] == [order]


def test_policy_in_an_undefined_tier_is_inactive() -> None:
    resources = [gnp("ghost.deny-all", tier_name="ghost", egress=[rule("Deny")])]
    engine = PolicyEngine(resources)
    assert engine.evaluate(flow(WEB, EXTERNAL)).action == "allow"
    assert [policy.key.name for policy in engine.inactive] == ["ghost.deny-all"]


def test_namespaced_policy_applies_only_in_its_namespace() -> None:
    resources = [np("default.deny", "shop", selector="app == 'web'", egress=[rule("Deny")])]
    other = pod("blog", {"app": "web"})
    assert egress(resources, WEB, EXTERNAL).action == "deny"
    assert egress(resources, other, EXTERNAL).action == "allow"


@pytest.mark.parametrize(
    ("namespace_selector", "subject", "applies"),
    [
        (None, WEB, True),
        (None, host({"app": "web"}), True),  # a GNP without namespaceSelector also selects host endpoints
        ("team == 'blue'", WEB, True),
        ("team == 'red'", WEB, False),
        ("team == 'blue'", host({"app": "web"}), False),
        ("all()", host({"app": "web"}), False),  # all() there: any namespaced endpoint
        ("projectcalico.org/name == 'shop'", WEB, True),
        ("kubernetes.io/metadata.name == 'shop'", WEB, True),
        ("projectcalico.org/name == 'blog'", pod("blog", {"app": "web"}), True),  # no Namespace resource for blog
        ("team != 'red'", host({"app": "web"}), True),  # as in Calico: a host has no namespace labels at all
    ],
)
def test_global_policy_namespace_selector(namespace_selector: str | None, subject: Endpoint, applies: bool) -> None:
    resources = [
        namespace("shop", team="blue"),
        gnp("default.log-web", selector="app == 'web'", namespace_selector=namespace_selector, egress=[rule("Pass")]),
    ]
    verdict = egress(resources, subject, EXTERNAL)
    assert (verdict.trace[0] == "0|default|default.log-web|pass|0") == applies


def test_all_in_a_global_policy_selector_means_namespaced_once_a_namespace_selector_is_given() -> None:
    # libcalico-go rewrites every all() of such a policy's selector to has(projectcalico.org/namespace)
    resources = [gnp("default.pass", selector="all()", namespace_selector="team != 'red'", egress=[rule("Pass")])]
    assert egress(resources, host({"app": "web"}), EXTERNAL).trace == ("0|__PROFILE__|__PROFILE__|deny|-1",)
    assert egress(resources, WEB, EXTERNAL).trace[0] == "0|default|default.pass|pass|0"


def test_implicit_pod_labels() -> None:
    resources = [
        gnp(
            "default.implicit",
            selector="projectcalico.org/orchestrator == 'k8s' && projectcalico.org/namespace == 'shop'"
            " && projectcalico.org/serviceaccount == 'web-sa'",
            egress=[rule("Deny")],
        )
    ]
    by_field = pod("shop", {"app": "web"}, service_account="web-sa")
    by_label = pod("shop", {"app": "web", "projectcalico.org/serviceaccount": "web-sa"})
    assert egress(resources, by_field, EXTERNAL).action == "deny"
    assert egress(resources, by_label, EXTERNAL).action == "deny"
    assert egress(resources, pod("shop", {"app": "web"}, service_account="other"), EXTERNAL).action == "allow"


def test_reporter_chooses_the_direction() -> None:
    resources = [
        np(
            "default.web",
            "shop",
            selector="app == 'web'",
            types=ALL_TYPES,
            ingress=[rule("Deny")],
            egress=[rule("Allow")],
        )
    ]
    engine = PolicyEngine(resources)
    out = engine.evaluate(flow(WEB, EXTERNAL, reporter="src"))
    back = engine.evaluate(flow(EXTERNAL, WEB, reporter="dst"))
    assert (out.direction, out.action) == ("egress", "allow")
    assert (back.direction, back.action) == ("ingress", "deny")


def test_forwarded_records_are_uncertain_only_when_forward_policies_exist() -> None:
    record = flow(net("198.51.100.1"), net("203.0.113.9", port=80), reporter="fwd")
    assert PolicyEngine([]).evaluate(record).action == "allow"
    forward = gnp("default.fwd", selector="role == 'gateway'", apply_on_forward=True, ingress=[rule("Deny")])
    verdict = PolicyEngine([forward]).evaluate(record)
    assert (verdict.action, verdict.direction, verdict.trace) == ("uncertain", "forward", ())


def test_a_record_whose_reporter_side_is_not_a_calico_endpoint_is_rejected() -> None:
    engine = PolicyEngine([])
    with pytest.raises(NotACalicoEndpointError):
        engine.evaluate(flow(EXTERNAL, WEB, reporter="src"))


def test_evaluate_direction_and_connection() -> None:
    resources = [
        np("default.web", "shop", selector="app == 'web'", egress=[allow_to(ports=ports(5432))]),
        np("default.db", "shop", selector="app == 'db'", ingress=[rule("Deny")]),
    ]
    engine = PolicyEngine(resources)
    db = pod("shop", {"app": "db"}, port=5432)
    assert engine.evaluate_direction(WEB, db, "egress", "tcp", 5432).action == "allow"
    assert engine.evaluate_direction(db, WEB, "ingress", "TCP", 5432).action == "deny"
    connection = engine.evaluate_connection(flow(WEB, db))
    assert connection.source is not None
    assert connection.source.action == "allow"
    assert connection.destination is not None
    assert connection.destination.action == "deny"
    assert connection.action == "deny"
    outside = engine.evaluate_connection(flow(WEB, net("198.51.100.1", port=5432)))
    assert (outside.destination, outside.action) == (None, "allow")
    with pytest.raises(ValueError, match="direction"):
        engine.evaluate_direction(WEB, db, "sideways", "tcp", 5432)


def test_calico_flow_log_records_are_accepted_as_dicts() -> None:
    record = {
        "start_time": 1_700_000_000,
        "end_time": 1_700_000_300,
        "source_ip": None,
        "source_name": "-",
        "source_name_aggr": "web-5d8f-*",
        "source_namespace": "shop",
        "source_port": None,
        "source_type": "wep",
        "source_labels": {"labels": ["app=web"]},
        "dest_ip": "198.51.100.7",
        "dest_name": "-",
        "dest_name_aggr": "pub",
        "dest_namespace": "-",
        "dest_port": 443,
        "dest_type": "net",
        "dest_labels": None,
        "proto": "tcp",
        "action": "allow",
        "reporter": "src",
    }
    engine = PolicyEngine([np("default.web", "shop", selector="app == 'web'", egress=[rule("Deny")])])
    assert engine.evaluate(record).trace == ("0|default|shop/default.web|deny|0",)
    assert Reporter("src") is Reporter.SOURCE


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (np("default.bad", "shop", selector="app = 'web'"), "expected"),
        (np("default.bad", "shop", egress=[allow_to(nets=("10.0.0.0/33",))]), "10.0.0.0/33"),
        (np("default.bad", "shop", egress=[allow_to(domains=("api*.example.com",))]), "whole label"),
        (np("default.bad", "shop", egress=[rule("Allow", protocol="QUIC")]), "QUIC"),
    ],
)
def test_malformed_policies_are_rejected_naming_the_policy(policy: object, reason: str) -> None:
    with pytest.raises(PolicyCompileError, match=reason) as caught:
        PolicyEngine([policy])  # type: ignore[list-item]
    assert caught.value.key.name == "default.bad"


def test_reaching_an_unavailable_policy_fails_the_evaluation() -> None:
    hidden = gnp("default.hidden", order=2, egress=[rule("Allow")])
    before = [gnp("default.first", order=1, selector="app == 'db'", egress=[rule("Allow")])]
    with pytest.raises(PolicyUnavailableError, match=r"default\.hidden"):
        PolicyEngine(before, unavailable=[hidden]).evaluate(flow(WEB, EXTERNAL))
    decided = [gnp("default.first", order=1, egress=[rule("Allow")])]
    assert PolicyEngine(decided, unavailable=[hidden]).evaluate(flow(WEB, EXTERNAL)).action == "allow"
