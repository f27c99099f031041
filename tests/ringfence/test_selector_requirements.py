"""What a selector requires of every label map it matches (the engine's index hint)."""

from __future__ import annotations

import pytest

from ringfence.selector import parse_selector, required_equalities

# (selector, required_labels(), required_equalities())
REQUIREMENTS_TABLE: list[tuple[str, dict[str, frozenset[str] | None], dict[str, frozenset[str]]]] = [
    ("", {}, {}),
    ("all()", {}, {}),
    ("global()", {}, {}),
    ('app == "x"', {"app": frozenset({"x"})}, {"app": frozenset({"x"})}),
    (
        'app == "x" && tier in {"a", "b"}',
        {"app": frozenset({"x"}), "tier": frozenset({"a", "b"})},
        {"app": frozenset({"x"}), "tier": frozenset({"a", "b"})},
    ),
    ('global() && env == "prod"', {"env": frozenset({"prod"})}, {"env": frozenset({"prod"})}),
    ('app == "x" || app == "y"', {"app": frozenset({"x", "y"})}, {"app": frozenset({"x", "y"})}),
    ('app == "x" || tier == "y"', {}, {}),
    ('app == "x" || has(app)', {"app": None}, {}),
    ('a in {"x", "y"} && a in {"y", "z"}', {"a": frozenset({"y"})}, {"a": frozenset({"y"})}),
    ('has(a) && a == "x"', {"a": frozenset({"x"})}, {"a": frozenset({"x"})}),
    ("a in {}", {"a": frozenset()}, {"a": frozenset()}),
    ("has(a)", {"a": None}, {}),
    ('a contains "x" && b starts with "y" && c ends with "z"', {"a": None, "b": None, "c": None}, {}),
    # Absent labels satisfy != and not in, so they require nothing.
    ('a != "x"', {}, {}),
    ('a not in {"x"}', {}, {}),
    ("!has(a)", {}, {}),
    ('!a == "x"', {}, {}),
    # Negations that do require something.
    ('!a != "x"', {"a": frozenset({"x"})}, {"a": frozenset({"x"})}),
    ('!a not in {"x", "y"}', {"a": frozenset({"x", "y"})}, {"a": frozenset({"x", "y"})}),
    (
        '!(a != "x" || b not in {"y"})',
        {"a": frozenset({"x"}), "b": frozenset({"y"})},
        {"a": frozenset({"x"}), "b": frozenset({"y"})},
    ),
    ('!(a != "x" && b != "y")', {}, {}),
    ('(a == "1" && b == "2") || (a == "3" && c == "4")', {"a": frozenset({"1", "3"})}, {"a": frozenset({"1", "3"})}),
]


@pytest.mark.parametrize(("text", "labels", "equalities"), REQUIREMENTS_TABLE)
def test_requirements(
    text: str, labels: dict[str, frozenset[str] | None], equalities: dict[str, frozenset[str]]
) -> None:
    selector = parse_selector(text)
    assert selector.required_labels() == labels
    assert selector.required_equalities() == equalities
    assert required_equalities(selector.root) == equalities
