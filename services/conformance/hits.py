"""Conformance of the policy-hit parser with Calico's vectors (``calico-policy-hits.json``).

Each ``valid`` string must parse and format back to itself in Goldmane style; each ``invalid``
string must be rejected with :class:`ringfence.flows.hits.PolicyHitError`.
"""

from __future__ import annotations

from ringfence.flows.hits import PolicyHitError, format_hit, parse_hit


def _strings(data: dict[str, object], key: str) -> list[str]:
    items = data.get(key, [])
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        msg = f"calico-policy-hits.json: {key!r} must be a list of strings"
        raise TypeError(msg)
    return list(items)


def run(data: dict[str, object]) -> tuple[int, list[str]]:
    """Check every vector; return the number passed and one message per failure."""
    passed = 0
    failures: list[str] = []
    for text in _strings(data, "valid"):
        try:
            hit = parse_hit(text)
        except PolicyHitError as error:
            failures.append(f"valid {text!r}: rejected: {error.reason}")
            continue
        written = format_hit(hit, "goldmane")
        if written != text:
            failures.append(f"valid {text!r}: formats back as {written!r}")
            continue
        passed += 1
    for text in _strings(data, "invalid"):
        try:
            hit = parse_hit(text)
        except PolicyHitError:
            passed += 1
            continue
        failures.append(f"invalid {text!r}: accepted as {hit!r}")
    return passed, failures
