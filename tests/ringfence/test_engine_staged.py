"""Staged policies: the enforced view ignores them, the staged view evaluates them as if enforced."""

from __future__ import annotations

import pytest
from test_engine_support import flow, gnp, net, np, pod, rule, tier

from ringfence.engine import PolicyEngine
from ringfence.model import (
    K8sPolicySpec,
    KubernetesNetworkPolicy,
    LabelSelector,
    ObjectMeta,
    PolicyType,
    StagedAction,
    StagedKubernetesNetworkPolicy,
)

WEB = pod("shop", {"app": "web"}, ip="10.0.0.5")
OUT = net("198.51.100.7", port=443)
PROFILE = "__PROFILE__|__PROFILE__.kns.shop|allow|0"


def evaluate(resources: list, record=None):
    return PolicyEngine(resources).evaluate(record or flow(WEB, OUT))


def test_staged_policy_gives_the_staged_verdict_only() -> None:
    verdict = evaluate([np("default.lock", "shop", staged="Set", egress=[rule("Deny")])])
    assert (verdict.action, verdict.trace) == ("allow", (f"0|{PROFILE}",))
    assert (verdict.staged_action, verdict.staged_trace) == ("deny", ("0|default|shop/default.staged:lock|deny|0",))
    assert verdict.staged_hits[0].kind == "snp"


def test_tier_of_only_staged_policies_is_skipped_when_enforcing() -> None:
    resources = [
        tier("quarantine", 50, "Deny"),
        gnp("quarantine.web", tier_name="quarantine", staged="Set", egress=[rule("Allow", protocol="UDP")]),
    ]
    verdict = evaluate(resources)
    assert verdict.action == "allow"
    assert verdict.trace == (f"0|{PROFILE}",)
    assert verdict.staged_action == "deny"
    assert verdict.staged_trace == ("0|quarantine|quarantine.staged:web|deny|-1",)


@pytest.mark.parametrize("enforced_name", ["default.backend", "backend"])
def test_staged_set_replaces_its_enforced_twin_in_the_staged_view(enforced_name: str) -> None:
    resources = [
        np(enforced_name, "shop", egress=[rule("Allow")]),
        np("default.backend", "shop", staged="Set", egress=[rule("Deny")]),
    ]
    verdict = evaluate(resources)
    assert verdict.trace == ("0|default|shop/default.backend|allow|0",)
    assert verdict.staged_trace == ("0|default|shop/default.staged:backend|deny|0",)


def test_staged_delete_removes_its_twin_from_the_staged_view() -> None:
    resources = [
        np("default.lock", "shop", egress=[rule("Deny")]),
        np("default.lock", "shop", staged="Delete"),
    ]
    verdict = evaluate(resources)
    assert (verdict.action, verdict.staged_action) == ("deny", "allow")
    assert verdict.staged_trace == (f"0|{PROFILE}",)


@pytest.mark.parametrize(
    ("staged_action", "staged_verdict"),
    [(StagedAction.SET, "deny"), (StagedAction.LEARN, "deny"), (StagedAction.IGNORE, "allow")],
)
def test_learn_is_previewed_like_set_and_ignore_is_absent(staged_action: StagedAction, staged_verdict: str) -> None:
    resources = [
        np("default.web", "shop", egress=[rule("Allow")]),
        np("default.web", "shop", staged=staged_action.value, egress=[rule("Deny")]),
    ]
    verdict = evaluate(resources)
    assert (verdict.action, verdict.staged_action) == ("allow", staged_verdict)


def test_staged_policy_runs_at_its_own_tier_and_order() -> None:
    resources = [
        tier("security", 100, "Pass"),
        np("default.allow", "shop", order=10, egress=[rule("Allow")]),
        np("default.first", "shop", order=1, staged="Set", egress=[rule("Pass")]),
        gnp("security.watch", tier_name="security", staged="Set", egress=[rule("Pass")]),
    ]
    verdict = evaluate(resources)
    assert verdict.staged_trace == (
        "0|security|security.staged:watch|pass|0",
        "1|default|shop/default.staged:first|pass|0",
        f"2|{PROFILE}",
    )
    assert verdict.trace == ("0|default|shop/default.allow|allow|0",)


def test_end_of_tier_of_a_mixed_tier_names_the_first_selecting_policy_of_each_view() -> None:
    resources = [
        np("default.a-staged", "shop", order=1, staged="Set", egress=[rule("Allow", protocol="UDP")]),
        np("default.b", "shop", order=2, egress=[rule("Allow", protocol="UDP")]),
    ]
    verdict = evaluate(resources)
    assert verdict.trace == ("0|default|shop/default.b|deny|-1",)
    assert verdict.staged_trace == ("0|default|shop/default.staged:a-staged|deny|-1",)


def test_staged_kubernetes_policy() -> None:
    spec = K8sPolicySpec(pod_selector=LabelSelector({"app": "web"}), policy_types=(PolicyType.EGRESS,))
    staged = StagedKubernetesNetworkPolicy(ObjectMeta("lock", "shop"), spec)
    verdict = evaluate([staged])
    assert verdict.action == "allow"
    assert verdict.staged_trace == ("0|default|shop/staged:knp.default.lock|deny|-1",)
    replaced = [
        KubernetesNetworkPolicy(ObjectMeta("lock", "shop"), spec),
        StagedKubernetesNetworkPolicy(ObjectMeta("lock", "shop"), spec, StagedAction.DELETE),
    ]
    both = evaluate(replaced)
    assert (both.action, both.staged_action) == ("deny", "allow")


def test_staged_policies_of_other_endpoints_leave_the_staged_view_equal() -> None:
    resources = [np("default.db", "shop", selector="app == 'db'", staged="Set", egress=[rule("Deny")])]
    verdict = evaluate(resources)
    assert (verdict.staged_action, verdict.staged_trace) == (verdict.action, verdict.trace)
