"""The tier-evaluation conformance runner (services/conformance/tiers.py) maps vectors onto the engine.

Uses small documents of its own: the real vectors are run by ``python -m services.conformance``.
"""

from __future__ import annotations

from typing import Any

from services.conformance.tiers import run

ALLOW_PROFILE = [{"name": "kns", "ingress_rules": [{"action": "Allow"}]}]


def vector(tiers: list[dict[str, Any]], expect: dict[str, Any], profiles: list[Any] | None = None) -> dict[str, Any]:
    return {
        "name": "v",
        "direction": "ingress",
        "tiers": tiers,
        "profiles": ALLOW_PROFILE if profiles is None else profiles,
        "expect": expect,
    }


def policy(name: str, *actions: str, staged: bool = False, missing: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {"name": name, "staged": staged, "ingress_rules": [{"action": a} for a in actions]}
    if missing:
        data["missing_from_store"] = True
    return data


def test_passing_vectors() -> None:
    vectors = [
        vector(
            [{"name": "t1", "default_action": "Deny", "ingress_policies": [policy("p", "Log", "Deny")]}],
            {"enforced_only": "deny", "trace": [{"tier": "t1", "name": "p", "action": "deny", "rule_index": 1}]},
        ),
        vector(
            [{"name": "t1", "default_action": "Deny", "ingress_policies": [policy("s", "Deny", staged=True)]}],
            {"enforced_only": "allow", "staged_as_enforced": "deny"},
        ),
        vector(
            [{"name": "t1", "default_action": "Deny", "ingress_policies": [policy("gone", missing=True)]}],
            {"enforced_only": "error", "staged_as_enforced": "error"},
        ),
        vector(
            [],
            {
                "enforced_only": "deny",
                "trace": [{"tier": "__PROFILE__", "name": "__PROFILE__", "action": "deny", "rule_index": -1}],
            },
            profiles=[],
        ),
    ]
    assert run({"vectors": vectors}) == (4, [])


def test_failures_are_reported() -> None:
    vectors = [
        vector(
            [{"name": "t1", "default_action": "Deny", "ingress_policies": [policy("p", "Allow")]}],
            {"enforced_only": "deny"},
        ),
        vector(
            [{"name": "t1", "default_action": "Pass", "ingress_policies": [policy("p")]}],
            {"enforced_only": "allow", "trace": [{"tier": "t1", "action": "pass", "rule_index": 0}]},
        ),
        vector([], {"enforced_only": "allow"}, profiles=[{"name": "odd", "ingress_rules": [{"action": "Deny"}]}]),
        {"name": "broken"},
    ]
    passed, failures = run({"vectors": vectors})
    assert passed == 0
    assert len(failures) == 4
    assert "enforced_only: expected 'deny', got 'allow'" in failures[0]
    assert failures[1].startswith("vectors[1] 'v': trace: expected")
    assert "not a namespace profile" in failures[2]
    assert "malformed or unsupported vector (KeyError" in failures[3]
