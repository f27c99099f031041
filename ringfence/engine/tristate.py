"""Three-valued matching: a rule criterion holds, does not hold, or cannot be decided from the record.

Aggregated flow logs drop facts (IPs, ports, service-account labels): a criterion that needs a missing
fact is :data:`MAYBE`. Values combine with Kleene logic: ``NO`` dominates a conjunction, ``YES`` a
disjunction. Plain ints keep the hot path cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, TypeAlias

Tri: TypeAlias = int

NO: Final[Tri] = 0
YES: Final[Tri] = 1
MAYBE: Final[Tri] = 2


def tri(value: bool) -> Tri:
    """``YES`` for True, ``NO`` for False."""
    return YES if value else NO


def tri_not(value: Tri) -> Tri:
    """Kleene negation: ``MAYBE`` stays ``MAYBE``."""
    if value == MAYBE:
        return MAYBE
    return NO if value == YES else YES


def tri_all(values: Iterable[Tri]) -> Tri:
    """Kleene conjunction (``YES`` for no values)."""
    result = YES
    for value in values:
        if value == NO:
            return NO
        if value == MAYBE:
            result = MAYBE
    return result


def tri_any(values: Iterable[Tri]) -> Tri:
    """Kleene disjunction (``NO`` for no values)."""
    result = NO
    for value in values:
        if value == YES:
            return YES
        if value == MAYBE:
            result = MAYBE
    return result
