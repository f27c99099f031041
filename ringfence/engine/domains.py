"""Domain names in egress rules and network sets (calico.md section 3, point 6).

Matching is case-insensitive and ignores one trailing dot. An exact name matches only itself. ``*`` is a
whole label, at the start or in the middle of the pattern, and matches one or more labels:
``*.twilio.com`` matches ``api.twilio.com`` and ``a.b.twilio.com`` but not ``twilio.com``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

_LABEL: Final = r"[^.]+"
_ONE_OR_MORE_LABELS: Final = rf"{_LABEL}(?:\.{_LABEL})*"


class DomainPatternError(ValueError):
    """A domain pattern Calico would reject: an empty name or label, or ``*`` inside or after a label."""


def normalize_domain(name: str) -> str:
    """Lower-case ``name`` and drop one trailing dot (``API.Twilio.com.`` -> ``api.twilio.com``)."""
    name = name.lower()
    return name.removesuffix(".")


@dataclass(frozen=True, slots=True)
class DomainPattern:
    """One compiled ``domains`` / ``allowedEgressDomains`` entry."""

    text: str
    _exact: str | None = field(repr=False)
    _regex: re.Pattern[str] | None = field(repr=False)

    @classmethod
    def compile(cls, text: str) -> DomainPattern:
        """Compile ``text``; raise :class:`DomainPatternError` when it is malformed."""
        name = normalize_domain(text.strip())
        labels = name.split(".")
        if not name or any(not label for label in labels):
            raise DomainPatternError(f"domain {text!r}: empty label")
        if "*" not in name:
            return cls(text, name, None)
        for position, label in enumerate(labels):
            if "*" in label and label != "*":
                raise DomainPatternError(f"domain {text!r}: '*' must be a whole label")
            if label == "*" and position == len(labels) - 1:
                raise DomainPatternError(f"domain {text!r}: '*' may not be the last label")
        parts = [_ONE_OR_MORE_LABELS if label == "*" else re.escape(label) for label in labels]
        return cls(text, None, re.compile(r"\.".join(parts)))

    @property
    def is_wildcard(self) -> bool:
        """Whether the pattern holds a ``*``."""
        return self._regex is not None

    def matches(self, domain: str) -> bool:
        """Whether ``domain`` (any case, optional trailing dot) matches the pattern."""
        name = normalize_domain(domain)
        if self._exact is not None:
            return name == self._exact
        assert self._regex is not None
        return self._regex.fullmatch(name) is not None


def compile_domains(texts: Iterable[str]) -> tuple[DomainPattern, ...]:
    """Compile every pattern of a rule or network set."""
    return tuple(DomainPattern.compile(text) for text in texts)


def any_domain_matches(patterns: tuple[DomainPattern, ...], domains: Iterable[str]) -> bool:
    """Whether one of ``domains`` matches one of ``patterns``."""
    return any(pattern.matches(domain) for domain in domains for pattern in patterns)
