"""Flow counts per policy and rule for the policy board and ``Policy.statistics``.

A policy's counts come from the recorded traces (the flow store's rollup) when the flow logs
recorded it in the window, and otherwise from the worker's evaluation of the stored flows (staged
policies created after the flows, for instance). Staged policies count in the staged view,
enforced ones in the enforced view. Counted once per request and window.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import KeysView
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, TypeAlias

from ringfence.flows.hits import HIT_KINDS
from services.api.schema.context import Info
from services.api.schema.errors import BadUserInputError
from services.api.schema.flow_types import BoardPolicy, BoardRule
from services.common.db import flow_summaries
from services.common.db import statistics as stats_store

PolicyKey: TypeAlias = tuple[str, str | None, str]
"""(resource kind, namespace, stored name) of a policy."""

INT32_MAX: Final = 2**31 - 1
STAGED_HIT_KINDS: Final = frozenset({"snp", "sgnp", "sknp"})
_ACTIONS: Final = ("allow", "deny", "pass")


@dataclass(frozen=True, slots=True)
class RuleHit:
    rule_index: int | None
    action: str
    flows: int


@dataclass
class BoardCounts:
    """Hits per policy, where they came from (recorded or evaluated), and each policy's tier."""

    hits: dict[PolicyKey, list[RuleHit]] = field(default_factory=lambda: defaultdict(list))
    source: dict[PolicyKey, str] = field(default_factory=dict)
    tier_of: dict[PolicyKey, str] = field(default_factory=dict)
    staged: dict[PolicyKey, bool] = field(default_factory=dict)

    def keys(self) -> KeysView[PolicyKey]:
        return self.source.keys()

    def board_policy(self, key: PolicyKey, *, staged: bool, order: float | None) -> BoardPolicy:
        """The board row of ``key`` (zeros when nothing counted it)."""
        totals = dict.fromkeys(_ACTIONS, 0)
        rules: dict[int | None, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_ACTIONS, 0))
        for hit in self.hits.get(key, ()):
            totals[hit.action] = totals.get(hit.action, 0) + hit.flows
            rules[hit.rule_index][hit.action] = rules[hit.rule_index].get(hit.action, 0) + hit.flows
        return BoardPolicy(
            kind=key[0],
            namespace=key[1],
            name=key[2],
            staged=staged,
            order=order,
            source=self.source.get(key, "none"),
            allowed=min(totals["allow"], INT32_MAX),
            denied=min(totals["deny"], INT32_MAX),
            passed=min(totals["pass"], INT32_MAX),
            rules=[
                BoardRule(
                    rule_index=index,
                    allowed=min(actions["allow"], INT32_MAX),
                    denied=min(actions["deny"], INT32_MAX),
                    passed=min(actions["pass"], INT32_MAX),
                )
                for index, actions in sorted(rules.items(), key=lambda item: -2 if item[0] is None else item[0])
            ],
        )


async def board_counts(info: Info, from_: datetime | None, to: datetime | None) -> BoardCounts:
    """The counts of ``[from_, to)``, computed once per request and window."""
    if from_ and to and from_ >= to:
        raise BadUserInputError("from must be before to", field="from")
    cache_key = ("board", from_, to)
    cached = info.context.cache.get(cache_key)
    if isinstance(cached, BoardCounts):
        return cached
    async with info.context.services.pool.acquire() as conn:
        recorded = await flow_summaries.policy_board_counts(conn, from_, to)
        evaluated = await stats_store.board_counts(conn, from_, to)
    counts = BoardCounts()
    for hit in recorded:
        kind = HIT_KINDS.get(hit.kind, hit.kind)
        if kind == "Profile":
            continue  # namespace and service-account profiles are no policies a user manages
        key = (kind, hit.namespace, hit.name)
        counts.hits[key].append(RuleHit(hit.rule_index, hit.action, hit.flows))
        counts.source[key] = "recorded"
        counts.tier_of[key] = hit.tier
        counts.staged[key] = hit.staged
    for item in evaluated:
        staged = item.key.kind in STAGED_HIT_KINDS
        kind = HIT_KINDS.get(item.key.kind, item.key.kind)
        key = (kind, item.key.namespace, item.key.name)
        if kind == "Profile" or item.key.staged_view != staged or counts.source.get(key) == "recorded":
            continue
        counts.hits[key].append(RuleHit(item.key.rule_index, item.key.action, item.counts.flows))
        counts.source[key] = "evaluated"
        counts.tier_of[key] = item.key.tier
        counts.staged[key] = staged
    info.context.cache[cache_key] = counts
    return counts
