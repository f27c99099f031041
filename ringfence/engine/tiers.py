"""Tier evaluation (calico.md section 3, points 1-4), three-valued.

Tiers in order (missing order last, ties by name); a tier with no applicable policy is skipped
entirely. Inside a tier, policies in order and, inside a policy, rules in order: the first matching
rule decides. ``Allow``/``Deny`` end the evaluation; ``Pass`` jumps to the next tier; ``Log`` records
nothing in the trace and continues. When no applicable policy of a tier decided, the tier's default
action applies (trace rule index ``-1``, named after the first policy of the tier that selected the
endpoint): ``Deny`` ends it, ``Pass`` continues. After the last tier a pod falls to its namespace
profile ``kns.<ns>``, which allows; a host endpoint has no profile and is denied.

When a policy's applicability or a rule's match is uncertain, both continuations are evaluated; the
verdict is their common action, or ``uncertain`` when they differ. Each position is explored once,
without recursion, so the cost stays linear in the number of uncertain decisions. The trace reported
is the one of the first continuation, in which every uncertain criterion is taken as matching.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

from ringfence.engine.compile import CompiledRule
from ringfence.engine.errors import PolicyUnavailableError
from ringfence.engine.policies import CompiledPolicy
from ringfence.engine.tristate import MAYBE, NO, YES, Tri
from ringfence.model import Action, Tier

ALLOW: Final = "allow"
DENY: Final = "deny"
PASS: Final = "pass"
PROFILE_TIER: Final = "__PROFILE__"


@dataclass(frozen=True, slots=True, eq=False)
class CompiledTier:
    """A tier: name, order (missing = +inf) and default action (``deny`` or ``pass``)."""

    name: str
    order: float
    default_action: str

    @classmethod
    def of(cls, tier: Tier) -> CompiledTier:
        """Compile a Tier resource."""
        action = PASS if Action(tier.default_action) is Action.PASS else DENY
        return cls(tier.name, math.inf if tier.order is None else float(tier.order), action)

    @property
    def sort_key(self) -> tuple[float, str]:
        """Tier order: ``order`` (missing last), then name."""
        return (self.order, self.name)


@dataclass(frozen=True, slots=True, eq=False)
class PlannedTier:
    """A tier with the policies that apply to one endpoint in one direction (``YES`` or ``MAYBE``).

    Each entry holds the policy, whether it applies and its rules for the direction.
    """

    tier: CompiledTier
    policies: tuple[tuple[CompiledPolicy, Tri, tuple[CompiledRule, ...]], ...]


Step: TypeAlias = tuple[str, CompiledPolicy | None, str, int]
"""One trace entry before numbering: tier name, policy (None for the profile), action, rule index."""

Profile: TypeAlias = tuple[str, Step]
"""What happens after the last tier: the action and its trace entry."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The actions reachable under the record's uncertainty, and the trace of the first continuation."""

    actions: frozenset[str]
    steps: tuple[Step, ...]


class TierWalk:
    """One evaluation of planned tiers; ``match`` answers (and may memoise) rule matches."""

    __slots__ = ("_match", "_pending", "_profile", "_tiers")

    def __init__(self, tiers: tuple[PlannedTier, ...], match: Callable[[CompiledRule], Tri], profile: Profile) -> None:
        self._tiers = tiers
        self._match = match
        self._profile = profile
        self._pending: list[tuple[int, int, int, int]] = []

    def run(self) -> Outcome:
        """Evaluate; raise :class:`PolicyUnavailableError` if a placeholder policy is reached.

        The common case (every decision certain) runs as plain loops; the first uncertain decision
        hands the rest over to the memoised explorer.
        """
        steps: list[Step] = []
        match = self._match
        for ti, planned in enumerate(self._tiers):
            trigger = -1
            passed = False
            for pi, (policy, applies, rules) in enumerate(planned.policies):
                if applies != YES:
                    return Outcome(self._explore(ti, pi, -1, trigger, steps), tuple(steps))
                if policy.placeholder:
                    raise PolicyUnavailableError(policy.key)
                if trigger < 0:
                    trigger = pi
                for rule in rules:
                    decision = match(rule)
                    if decision == NO:
                        continue
                    if decision != YES:
                        return Outcome(self._explore(ti, pi, rule.index, trigger, steps), tuple(steps))
                    action = rule.action
                    if action == "log":
                        continue
                    steps.append((planned.tier.name, policy, action, rule.index))
                    if action == PASS:
                        passed = True
                        break
                    return Outcome(frozenset((action,)), tuple(steps))
                if passed:
                    break
            if passed:
                continue
            if trigger >= 0:
                tier = planned.tier
                steps.append((tier.name, planned.policies[trigger][0], tier.default_action, -1))
                if tier.default_action == DENY:
                    return Outcome(frozenset((DENY,)), tuple(steps))
        action, step = self._profile
        steps.append(step)
        return Outcome(frozenset((action,)), tuple(steps))

    def _explore(self, ti: int, pi: int, ri: int, trigger: int, steps: list[Step]) -> frozenset[str]:
        """Actions reachable from a position; the first continuation's steps go to ``steps``.

        Position: tier ``ti``, policy ``pi`` of it, rule ``ri`` of that policy (``-1``: the policy's
        applicability is still to be decided); ``trigger`` is the first selecting policy of the tier.
        Each continuation takes its uncertain decisions as matching and leaves the other side as a
        position to explore later; positions are explored once each, iteratively.
        """
        actions = {self._follow((ti, pi, ri, trigger), steps)}
        explored: set[tuple[int, int, int, int]] = set()
        while self._pending and len(actions) < 2:
            position = self._pending.pop()
            if position not in explored:
                explored.add(position)
                actions.add(self._follow(position, None))
        self._pending.clear()
        return frozenset(actions)

    def _follow(self, position: tuple[int, int, int, int], steps: list[Step] | None) -> str:
        """Walk from ``position`` taking every uncertain decision as matching; queue the alternatives."""
        ti, pi, ri, trigger = position
        tiers = self._tiers
        pending = self._pending
        while True:
            if ti == len(tiers):
                action, step = self._profile
                if steps is not None:
                    steps.append(step)
                return action
            planned = tiers[ti]
            policies = planned.policies
            if pi == len(policies):
                if trigger >= 0:
                    tier = planned.tier
                    if steps is not None:
                        steps.append((tier.name, policies[trigger][0], tier.default_action, -1))
                    if tier.default_action == DENY:
                        return DENY
                ti, pi, ri, trigger = ti + 1, 0, -1, -1
                continue
            policy, applies, rules = policies[pi]
            if ri < 0:
                if applies == NO:
                    pi += 1
                    continue
                if applies == MAYBE:
                    pending.append((ti, pi + 1, -1, trigger))
                if policy.placeholder:
                    raise PolicyUnavailableError(policy.key)
                if trigger < 0:
                    trigger = pi
                ri = 0
                continue
            if ri == len(rules):
                pi, ri = pi + 1, -1
                continue
            rule = rules[ri]
            decision = self._match(rule)
            if decision == NO:
                ri += 1
                continue
            if decision == MAYBE:
                pending.append((ti, pi, ri + 1, trigger))
            action = rule.action
            if action == "log":
                ri += 1
                continue
            if steps is not None:
                steps.append((planned.tier.name, policy, action, rule.index))
            if action == PASS:
                ti, pi, ri, trigger = ti + 1, 0, -1, -1
                continue
            return action
