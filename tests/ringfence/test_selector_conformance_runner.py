"""The selector conformance runner (services/conformance/selectors.py) reports passes and failures.

Uses small documents of its own: the real vectors are run by ``python -m services.conformance``.
"""

from __future__ import annotations

from services.conformance.selectors import run


def test_passing_document() -> None:
    data: dict[str, object] = {
        "match_vectors": [
            {"selector": "has(a)", "labels": {"a": "x"}, "expected_match": True},
            {"selector": "a != 'x'", "labels": {}, "expected_match": True},
        ],
        "parse_failures": {"mine": ["a ==", "has()"]},
        "canonical_form_vectors": [
            {"input": " a in {'b', 'a'} ", "canonical": 'a in {"a", "b"}', "unique_id": None},
            {"input": "", "canonical": "all()", "unique_id": "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"},
        ],
    }
    assert run(data) == (6, [])


def test_each_kind_of_failure_is_reported() -> None:
    data: dict[str, object] = {
        "match_vectors": [
            {"selector": "has(a)", "labels": {}, "expected_match": True},
            {"selector": "a ==", "labels": {}, "expected_match": True},
            {"labels": {}, "expected_match": True},
        ],
        "parse_failures": {"mine": ["has(a)"]},
        "canonical_form_vectors": [
            {"input": "has(a)", "canonical": "has( a )"},
            {"input": "all()", "canonical": "all()", "unique_id": "s:wrong"},
        ],
    }
    passed, failures = run(data)
    assert passed == 0
    assert len(failures) == 6
    assert failures[0].startswith("match_vectors[0]: 'has(a)' on {}: expected match=True")
    assert "does not parse" in failures[1]
    assert "malformed vector (KeyError" in failures[2]
    assert failures[3].startswith("parse_failures.mine[0]: 'has(a)' parsed as 'has(a)'")
    assert "expected 'has( a )'" in failures[4]
    assert "unique id" in failures[5]
