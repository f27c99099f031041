"""Uncertainty (calico.md 3.7 and 5): a verdict is uncertain only when it depends on a missing fact."""

from __future__ import annotations

import pytest
from test_engine_support import flow, gnp, net, np, pod, ports, rule, tier

from ringfence.engine import PolicyEngine
from ringfence.model import EntityRule, Rule

WEB = pod("shop", {"app": "web"}, ip="10.0.0.5")
AGGREGATED = net(name_aggr="pub", port=443)  # an external address whose IP was aggregated away
UNKNOWN_CIDR = EntityRule(nets=("52.0.0.0/8",))  # uncertain for AGGREGATED
PROFILE = "__PROFILE__|__PROFILE__.kns.shop|allow|0"


def verdict_of(rules: list[Rule], *more: object, dest=AGGREGATED):
    resources = [np("default.p", "shop", order=1, egress=rules), *more]
    return PolicyEngine(resources).evaluate(flow(WEB, dest))


@pytest.mark.parametrize(
    ("rules", "action"),
    [
        pytest.param([rule("Deny", destination=UNKNOWN_CIDR)], "deny", id="uncertain-deny-then-tier-deny"),
        pytest.param([rule("Allow", destination=UNKNOWN_CIDR)], "uncertain", id="uncertain-allow-then-tier-deny"),
        pytest.param([rule("Allow", destination=UNKNOWN_CIDR), rule("Allow")], "allow", id="both-branches-allow"),
        pytest.param([rule("Deny", destination=UNKNOWN_CIDR), rule("Allow")], "uncertain", id="deny-or-allow"),
        pytest.param([rule("Log", destination=UNKNOWN_CIDR), rule("Allow")], "allow", id="uncertain-log-is-harmless"),
        pytest.param(
            [rule("Deny", destination=UNKNOWN_CIDR), rule("Deny", destination=EntityRule(ports=ports(443)))],
            "deny",
            id="every-continuation-denies",
        ),
        pytest.param([rule("Pass", destination=UNKNOWN_CIDR), rule("Deny")], "uncertain", id="pass-to-profile-or-deny"),
    ],
)
def test_verdict_is_uncertain_only_when_the_branches_disagree(rules: list[Rule], action: str) -> None:
    assert verdict_of(rules).action == action


def test_uncertain_pass_whose_both_continuations_deny_is_deny() -> None:
    later = [tier("late", 2_000_000, "Deny"), gnp("late.deny", tier_name="late", egress=[rule("Deny")])]
    verdict = verdict_of([rule("Pass", destination=UNKNOWN_CIDR), rule("Deny")], *later)
    assert verdict.action == "deny"


def test_trace_takes_every_uncertain_criterion_as_matching() -> None:
    verdict = verdict_of([rule("Deny", destination=UNKNOWN_CIDR), rule("Allow")])
    assert verdict.trace == ("0|default|shop/default.p|deny|0",)
    assert verdict.uncertain


def test_known_address_removes_the_uncertainty() -> None:
    rules = [rule("Deny", destination=UNKNOWN_CIDR), rule("Allow")]
    assert verdict_of(rules, dest=net("52.1.2.3", port=443)).action == "deny"
    assert verdict_of(rules, dest=net("53.1.2.3", port=443)).action == "allow"


def test_uncertain_policy_selection() -> None:
    uncertain_policy = gnp("default.sa", order=1, service_account_selector="team == 'payments'", egress=[rule("Deny")])
    alone = PolicyEngine([uncertain_policy]).evaluate(flow(WEB, AGGREGATED))
    assert alone.action == "uncertain"
    denied_anyway = PolicyEngine([uncertain_policy, gnp("default.z", order=2, egress=[rule("Deny")])])
    assert denied_anyway.evaluate(flow(WEB, AGGREGATED)).action == "deny"


def test_uncertain_selection_decides_whether_the_tier_is_skipped() -> None:
    resources = [
        tier("strict", 10, "Deny"),
        gnp(
            "strict.sa",
            tier_name="strict",
            service_account_selector="team == 'payments'",
            egress=[rule("Pass", protocol="UDP")],
        ),
    ]
    verdict = PolicyEngine(resources).evaluate(flow(WEB, AGGREGATED))
    assert verdict.action == "uncertain"  # selected: end-of-tier deny; not selected: skipped, profile allows
    assert verdict.trace == ("0|strict|strict.sa|deny|-1",)


def test_many_uncertain_rules_stay_cheap_and_exact() -> None:
    named = [rule("Deny", protocol="TCP", destination=EntityRule(ports=(f"port-{i}",))) for i in range(1500)]
    dest = pod("shop", {"app": "db"}, port=5432)
    resources = [np("default.p", "shop", egress=[*named, rule("Deny")])]
    assert PolicyEngine(resources).evaluate(flow(WEB, dest)).action == "deny"
    resources = [np("default.p", "shop", egress=[*named, rule("Allow")])]
    assert PolicyEngine(resources).evaluate(flow(WEB, dest)).action == "uncertain"


def test_staged_and_enforced_uncertainty_are_independent() -> None:
    resources = [
        np("default.p", "shop", egress=[rule("Allow")]),
        np("default.p", "shop", staged="Set", egress=[rule("Allow", destination=UNKNOWN_CIDR)]),
    ]
    verdict = PolicyEngine(resources).evaluate(flow(WEB, AGGREGATED))
    assert (verdict.action, verdict.staged_action) == ("allow", "uncertain")
