"""Policy statistics by evaluation: how many flows each policy rule allowed, denied or passed.

The flow log records which policies decided each flow, but not for policies created after it (a
staged policy written today, a recommendation). Those are counted by evaluating the stored flows with
the engine: :func:`count_hits` sums, per view (enforced or staged), policy, rule and action, the
records, flows, packets and bytes of the evaluated flows whose trace passes through that rule.
Hits are keyed as the flow store keys recorded hits (short kind, tier-qualified name), so both sources
line up on the policy board.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ringfence.flows.hits import hit_policy_name
from ringfence.flows.record import Flow, PolicyHit


@dataclass(frozen=True, slots=True, order=True)
class HitKey:
    """One rule (or end-of-tier action, ``rule_index`` -1) of one policy, in one view, with one action.

    ``staged_view`` is True for the staged view (staged policies evaluated as if enforced), False for
    the enforced one. ``kind`` is the short kind of policy hits (``np``, ``snp``, ``gnp``, ...).
    """

    staged_view: bool
    tier: str
    kind: str
    namespace: str | None
    name: str
    rule_index: int | None
    action: str


@dataclass(frozen=True, slots=True)
class HitCounts:
    """What passed through one rule: stored records, connections (``num_flows``), packets and bytes."""

    records: int = 0
    flows: int = 0
    packets: int = 0
    bytes: int = 0

    def __add__(self, other: HitCounts) -> HitCounts:
        return HitCounts(
            self.records + other.records,
            self.flows + other.flows,
            self.packets + other.packets,
            self.bytes + other.bytes,
        )


@dataclass(frozen=True, slots=True)
class EvaluatedFlow:
    """A flow (or a merged flow key), how many stored records it stands for, and its evaluated traces."""

    flow: Flow
    records: int
    hits: tuple[PolicyHit, ...]
    staged_hits: tuple[PolicyHit, ...]


def hit_key(hit: PolicyHit, *, staged_view: bool) -> HitKey:
    """The statistics key of ``hit`` in the given view."""
    return HitKey(staged_view, hit.tier, hit.kind, hit.namespace, hit_policy_name(hit), hit.rule_index, hit.action)


def flow_counts(flow: Flow, records: int) -> HitCounts:
    """The counters one flow adds to every rule its trace passes through."""
    return HitCounts(
        records=records,
        flows=flow.num_flows,
        packets=flow.packets_in + flow.packets_out,
        bytes=flow.bytes_in + flow.bytes_out,
    )


def count_hits(evaluated: Iterable[EvaluatedFlow]) -> dict[HitKey, HitCounts]:
    """Sum the counters of every evaluated flow onto each hit of its enforced and staged traces.

    A policy that appears twice in one trace (a Pass, then an end-of-tier hit) counts once per hit.
    """
    totals: dict[HitKey, HitCounts] = {}
    for item in evaluated:
        counts = flow_counts(item.flow, item.records)
        for staged_view, hits in ((False, item.hits), (True, item.staged_hits)):
            for hit in hits:
                key = hit_key(hit, staged_view=staged_view)
                current = totals.get(key)
                totals[key] = counts if current is None else current + counts
    return totals


def diff_counts(
    old: Mapping[HitKey, HitCounts], new: Mapping[HitKey, HitCounts]
) -> tuple[dict[HitKey, HitCounts], list[HitKey]]:
    """What to write to turn ``old`` into ``new``: the rows to upsert and the keys to delete."""
    upserts = {key: counts for key, counts in new.items() if old.get(key) != counts}
    deletes = sorted(key for key in old if key not in new)
    return upserts, deletes
