"""The enforced and the staged view of the policies, and per-endpoint plans of what applies.

Enforced view: every non-staged policy. Staged view: the enforced policies minus those a staged
policy replaces (``Set``, ``Learn``) or deletes (``Delete``), plus the staged ``Set``/``Learn``
policies, each at its own tier and order; ``Ignore`` is in neither. A plan lists, per tier in order,
the policies whose selector selects one endpoint for one direction; tiers without any are left out
(skipped entirely, end-of-tier action included).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, TypeAlias

from ringfence.engine.compile import CompiledRule
from ringfence.engine.identity import Identity
from ringfence.engine.index import PolicyIndex
from ringfence.engine.policies import CompiledPolicy
from ringfence.engine.tiers import CompiledTier, PlannedTier
from ringfence.engine.tristate import NO, Tri
from ringfence.model import StagedAction

ViewPlan: TypeAlias = tuple[PlannedTier, ...]

_REPLACING: Final = frozenset({StagedAction.SET, StagedAction.LEARN})


class _OrderedView:
    """One view for one direction: tiers in order and each policy's rank in the evaluation order."""

    __slots__ = ("rank", "tiers")

    def __init__(self, tiers: Sequence[CompiledTier], policies: Sequence[CompiledPolicy], *, egress: bool) -> None:
        self.tiers = tuple(tiers)
        self.rank: dict[int, tuple[int, int]] = {}
        position = 0
        for tier_index, tier in enumerate(tiers):
            members = [
                p for p in policies if p.tier == tier.name and (p.applies_egress if egress else p.applies_ingress)
            ]
            for policy in sorted(members, key=lambda p: p.sort_key):
                self.rank[policy.uid] = (position, tier_index)
                position += 1


def staged_view(policies: Sequence[CompiledPolicy]) -> list[CompiledPolicy]:
    """The policies of the staged view (see the module docstring)."""
    staged = [p for p in policies if p.staged and p.staged_action is not StagedAction.IGNORE]
    twins = {p.twin for p in staged}
    view = [p for p in policies if not p.staged and p.twin not in twins]
    view += [p for p in staged if p.staged_action in _REPLACING]
    return view


class PolicyViews:
    """Both views, the label index over their policies and the cached plans."""

    def __init__(self, tiers: Sequence[CompiledTier], policies: Sequence[CompiledPolicy]) -> None:
        enforced = [p for p in policies if not p.staged]
        staged_policies = staged_view(policies)
        self.enforced: tuple[CompiledPolicy, ...] = tuple(enforced)
        self.staged: tuple[CompiledPolicy, ...] = tuple(staged_policies)
        self._ordered = (
            (_OrderedView(tiers, enforced, egress=False), _OrderedView(tiers, enforced, egress=True)),
            (_OrderedView(tiers, staged_policies, egress=False), _OrderedView(tiers, staged_policies, egress=True)),
        )
        self._by_uid = {p.uid: p for p in policies}
        # Policies whose presence differs between the views: only endpoints selected by one of them
        # need a staged plan of their own.
        staged_uids = {p.uid for p in staged_policies}
        self._differing = frozenset({p.uid for p in policies if p.staged} | {p.uid for p in enforced} - staged_uids)
        self._index = PolicyIndex(policies)
        self._plans: dict[tuple[int, bool], tuple[ViewPlan, ViewPlan | None]] = {}

    def plan(self, identity: Identity, *, egress: bool) -> tuple[ViewPlan, ViewPlan | None]:
        """What applies to ``identity``: the enforced plan, and the staged one (None when identical)."""
        key = (identity.uid, egress)
        plan = self._plans.get(key)
        if plan is None:
            candidates = self._index.candidates(identity.labels)
            applies: dict[int, Tri] = {}
            for uid in candidates:
                value = self._by_uid[uid].selector.evaluate(identity)
                if value != NO:
                    applies[uid] = value
            enforced = self._plan_view(self._ordered[0][egress], applies, egress=egress)
            staged: ViewPlan | None = None
            if not self._differing.isdisjoint(applies):
                staged = self._plan_view(self._ordered[1][egress], applies, egress=egress)
                if _same_plan(enforced, staged):
                    staged = None
            plan = (enforced, staged)
            self._plans[key] = plan
        return plan

    def clear(self) -> None:
        """Forget the cached plans."""
        self._plans.clear()

    def _plan_view(self, view: _OrderedView, applies: dict[int, Tri], *, egress: bool) -> ViewPlan:
        rank = view.rank
        ranked = sorted((rank[uid], uid) for uid in applies if uid in rank)
        planned: list[PlannedTier] = []
        current = -1
        chosen: list[tuple[CompiledPolicy, Tri, tuple[CompiledRule, ...]]] = []
        for (_, tier_index), uid in ranked:
            if tier_index != current:
                if chosen:
                    planned.append(PlannedTier(view.tiers[current], tuple(chosen)))
                current, chosen = tier_index, []
            policy = self._by_uid[uid]
            chosen.append((policy, applies[uid], policy.egress if egress else policy.ingress))
        if chosen:
            planned.append(PlannedTier(view.tiers[current], tuple(chosen)))
        return tuple(planned)


def _same_plan(first: ViewPlan, second: ViewPlan) -> bool:
    return _signature(first) == _signature(second)


def _signature(plan: ViewPlan) -> tuple[object, ...]:
    return tuple((tier.tier, *((policy.uid, applies) for policy, applies, _ in tier.policies)) for tier in plan)
