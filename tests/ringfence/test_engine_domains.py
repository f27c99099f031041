"""Domain patterns (calico.md section 3, point 6)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.engine import DomainPattern, DomainPatternError


@pytest.mark.parametrize(
    ("pattern", "domain", "matches"),
    [
        ("api.twilio.com", "api.twilio.com", True),
        ("api.twilio.com", "API.Twilio.Com", True),
        ("api.twilio.com", "api.twilio.com.", True),
        ("api.twilio.com", "x.api.twilio.com", False),
        ("*.twilio.com", "api.twilio.com", True),
        ("*.twilio.com", "a.b.twilio.com", True),
        ("*.twilio.com", "twilio.com", False),
        ("*.twilio.com", "apitwilio.com", False),
        ("*.twilio.com", "api.twilio.com.evil.io", False),
        ("api.*.example.com", "api.eu.example.com", True),
        ("api.*.example.com", "api.eu.west.example.com", True),
        ("api.*.example.com", "api.example.com", False),
        ("*.*.example.com", "a.b.example.com", True),
        ("*.*.example.com", "a.example.com", False),
        ("*.Example.COM", "www.example.com", True),
    ],
)
def test_matching(pattern: str, domain: str, matches: bool) -> None:
    assert DomainPattern.compile(pattern).matches(domain) is matches


@pytest.mark.parametrize("pattern", ["", "api..com", "api*.example.com", "example.*", "*", "a.b*c.com"])
def test_malformed_patterns_are_rejected(pattern: str) -> None:
    with pytest.raises(DomainPatternError):
        DomainPattern.compile(pattern)


LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8)


@settings(max_examples=200)
@given(prefix=st.lists(LABEL, min_size=1, max_size=4), suffix=st.lists(LABEL, min_size=1, max_size=3))
def test_leading_wildcard_matches_exactly_the_strict_subdomains(prefix: list[str], suffix: list[str]) -> None:
    pattern = DomainPattern.compile("*." + ".".join(suffix))
    assert pattern.matches(".".join(prefix + suffix))
    assert not pattern.matches(".".join(suffix))
