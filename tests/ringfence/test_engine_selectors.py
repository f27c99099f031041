"""Effective selectors built as libcalico-go builds them for Felix."""

from __future__ import annotations

from typing import Any

import pytest

from ringfence.engine.selectors import entity_rule_selectors, global_policy_selector, namespaced_policy_selector
from ringfence.model import EntityRule, ServiceAccountMatch
from ringfence.selector import parse_selector


def text(node: Any) -> str | None:
    return None if node is None else str(node)


def canonical(selector: str) -> str:
    return str(parse_selector(selector))


@pytest.mark.parametrize(
    ("selector", "namespace_selector", "service_account_selector", "expected"),
    [
        ("", None, "", "all()"),
        ("app == 'x'", None, "", "app == 'x'"),
        ("", "team == 'a'", "", "pcns.team == 'a'"),
        ("app == 'x'", "team == 'a'", "", "app == 'x' && pcns.team == 'a'"),
        # every all() of the combination means "any namespaced endpoint" once a namespaceSelector is given
        ("all()", "team != 'a'", "", "has(projectcalico.org/namespace) && pcns.team != 'a'"),
        ("", "all()", "", "has(projectcalico.org/namespace)"),
        ("", None, "all()", "has(projectcalico.org/serviceaccount)"),
        ("app == 'x'", None, "role == 'db'", "app == 'x' && pcsa.role == 'db'"),
    ],
)
def test_global_policy_selector(
    selector: str, namespace_selector: str | None, service_account_selector: str, expected: str
) -> None:
    built = global_policy_selector(selector, namespace_selector, service_account_selector)
    assert parse_selector(str(built)) == parse_selector(canonical(f"({expected})"))


def test_namespaced_policy_selector() -> None:
    built = namespaced_policy_selector("app == 'x'", "role == 'db'", "shop")
    expected = "(app == 'x' && projectcalico.org/namespace == 'shop') && pcsa.role == 'db'"
    assert parse_selector(str(built)) == parse_selector(canonical(expected))
    assert str(namespaced_policy_selector("", "", "shop")) == canonical("projectcalico.org/namespace == 'shop'")


@pytest.mark.parametrize(
    ("rule", "namespace", "positive", "negative"),
    [
        (EntityRule(nets=("10.0.0.0/8",)), "shop", None, None),
        (EntityRule(selector="app == 'x'"), None, "app == 'x'", None),
        (EntityRule(selector="app == 'x'"), "shop", "projectcalico.org/namespace == 'shop' && app == 'x'", None),
        (EntityRule(not_selector="app == 'x'"), "shop", "projectcalico.org/namespace == 'shop'", "app == 'x'"),
        (EntityRule(not_selector="app == 'x'"), None, None, "app == 'x'"),
        (EntityRule(namespace_selector="all()"), "shop", "has(projectcalico.org/namespace)", None),
        (EntityRule(namespace_selector="global()"), None, "!has(projectcalico.org/namespace)", None),
        (
            EntityRule(namespace_selector="team == 'a'", selector="app == 'x'"),
            "shop",
            "pcns.team == 'a' && app == 'x'",
            None,
        ),
        (
            EntityRule(service_accounts=ServiceAccountMatch(names=("api", "web"), selector="role == 'x'")),
            "shop",
            (
                "projectcalico.org/namespace == 'shop'"
                " && (pcsa.role == 'x' && projectcalico.org/serviceaccount in {'api', 'web'})"
            ),
            None,
        ),
    ],
)
def test_entity_rule_selectors(
    rule: EntityRule, namespace: str | None, positive: str | None, negative: str | None
) -> None:
    built_positive, built_negative = entity_rule_selectors(rule, namespace)
    if positive is None:
        assert built_positive is None
    else:
        assert parse_selector(str(built_positive)) == parse_selector(canonical(f"({positive})"))
    assert text(built_negative) == (None if negative is None else canonical(negative))
