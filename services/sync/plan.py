"""What a sync would do: a three-way comparison of the cluster, Ringfence and their last common state.

For every resource the sync knows three documents: the cluster's, Ringfence's, and the *base*, the
document both sides held when the sync last brought them together (None when it never did, or when
the resource was then absent on both). A side whose document differs from the base changed since:

| cluster | Ringfence | action |
| --- | --- | --- |
| = Ringfence | = cluster | nothing (``baseline`` when the base is not that document yet) |
| changed | unchanged | ``import`` (or ``remove`` when deleted in the cluster) |
| unchanged | changed | ``apply`` (or ``delete`` when deleted in Ringfence); ``hold`` when read-only |
| changed | changed, differently | ``conflict``: the cluster's version wins and the conflict is recorded |

Without a base a resource present on one side only is new there; present on both sides but different,
it changed on both. This module is pure: it reads nothing and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from ringfence.model import ResourceKey
from services.sync.documents import ClusterObject
from services.sync.kinds import creation_rank

Document = dict[str, Any]


class Action(StrEnum):
    """What the sync does with one resource."""

    IMPORT = "import"  # cluster -> Ringfence: create or update
    REMOVE = "remove"  # deleted in the cluster -> removed from Ringfence
    APPLY = "apply"  # Ringfence -> cluster: create or update (server-side apply)
    DELETE = "delete"  # deleted in Ringfence -> deleted in the cluster
    CONFLICT = "conflict"  # changed on both sides: the cluster's version replaces Ringfence's
    HOLD = "hold"  # a Ringfence change that is not written back (read-only mode or kind)
    BASELINE = "baseline"  # equal on both sides: remember it as the common base


# Actions that change Ringfence's store; the others change the cluster or nothing.
STORE_ACTIONS: Final = frozenset({Action.IMPORT, Action.REMOVE, Action.CONFLICT, Action.BASELINE})
CLUSTER_ACTIONS: Final = frozenset({Action.APPLY, Action.DELETE})


@dataclass(frozen=True, slots=True)
class RingfenceSide:
    """Ringfence's stored document of a resource and its version there."""

    document: Document
    version: int


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str


def decide(
    cluster: Document | None,
    ringfence: Document | None,
    base: Document | None,
    *,
    writable: bool,
) -> Decision | None:
    """The action for one resource from its three documents; None when there is nothing to do.

    ``writable``: whether a Ringfence change may be written to the cluster (read-write mode and a kind
    the sync writes).
    """
    if cluster == ringfence:
        if cluster is not None and base != cluster:
            return Decision(Action.BASELINE, "the same on both sides")
        return None
    cluster_changed = cluster != base
    ringfence_changed = ringfence != base
    if cluster_changed and ringfence_changed:
        return Decision(Action.CONFLICT, _conflict_reason(cluster, ringfence, base))
    if cluster_changed:
        if cluster is None:
            return Decision(Action.REMOVE, "deleted in the cluster")
        return Decision(Action.IMPORT, "new in the cluster" if base is None else "changed in the cluster")
    if ringfence is None:
        return _write(Decision(Action.DELETE, "deleted in Ringfence"), writable)
    return _write(Decision(Action.APPLY, "new in Ringfence" if base is None else "changed in Ringfence"), writable)


def _write(decision: Decision, writable: bool) -> Decision:
    if writable:
        return decision
    return Decision(Action.HOLD, f"{decision.reason}; not written back ({decision.action} held)")


def _conflict_reason(cluster: Document | None, ringfence: Document | None, base: Document | None) -> str:
    if base is None:
        return "different in the cluster and in Ringfence, never synced: the cluster's version wins"
    if cluster is None:
        return "deleted in the cluster, changed in Ringfence: the cluster wins, removed from Ringfence"
    if ringfence is None:
        return "changed in the cluster, deleted in Ringfence: the cluster's version wins"
    return "changed in the cluster and in Ringfence: the cluster's version wins"


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One resource's action, with what each side holds."""

    key: ResourceKey
    action: Action
    reason: str
    cluster: ClusterObject | None
    ringfence: RingfenceSide | None
    base: Document | None


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """The actions of one sync pass, in the order they are carried out."""

    items: tuple[PlanItem, ...]
    read_write: bool

    def of(self, *actions: Action) -> list[PlanItem]:
        return [item for item in self.items if item.action in actions]

    def counts(self) -> dict[Action, int]:
        counted = dict.fromkeys(Action, 0)
        for item in self.items:
            counted[item.action] += 1
        return counted

    @property
    def empty(self) -> bool:
        """True when nothing but baselines would happen."""
        return all(item.action is Action.BASELINE for item in self.items)


def plan_sync(
    cluster: Mapping[ResourceKey, ClusterObject],
    ringfence: Mapping[ResourceKey, RingfenceSide],
    bases: Mapping[ResourceKey, Document],
    *,
    writable_kinds: frozenset[str],
    read_write: bool,
    keys: Iterable[ResourceKey] | None = None,
) -> SyncPlan:
    """Plan the sync of ``keys`` (every key on any side when None).

    ``writable_kinds`` are the Ringfence kinds the cluster accepts writes of; the others (namespaces,
    Calico read from CRDs) are only ever imported.
    """
    if keys is None:
        keys = set(cluster) | set(ringfence)
    items: list[PlanItem] = []
    for key in keys:
        cluster_object = cluster.get(key)
        stored = ringfence.get(key)
        base = bases.get(key)
        decision = decide(
            None if cluster_object is None else cluster_object.document,
            None if stored is None else stored.document,
            base,
            writable=read_write and key.kind in writable_kinds,
        )
        if decision is not None:
            items.append(PlanItem(key, decision.action, decision.reason, cluster_object, stored, base))
    items.sort(key=_execution_order)
    return SyncPlan(tuple(items), read_write)


def _execution_order(item: PlanItem) -> tuple[int, int, ResourceKey]:
    """Store changes first, then cluster writes; in each, deletions (children first), then creations (parents first)."""
    rank = creation_rank(item.key.kind)
    removal = item.action in {Action.REMOVE, Action.DELETE} or (item.action is Action.CONFLICT and item.cluster is None)
    phase = 0 if item.action in STORE_ACTIONS else 1 if item.action in CLUSTER_ACTIONS else 2
    return phase, -rank if removal else rank, item.key


def render_plan(plan: SyncPlan, *, header: str = "") -> str:
    """The plan as a person reads it: a summary line, then one line per action (baselines left out)."""
    counts = plan.counts()
    shown = [item for item in plan.items if item.action is not Action.BASELINE]
    summary = ", ".join(
        f"{counts[action]} {action}" for action in Action if counts[action] and action is not Action.BASELINE
    )
    lines = [f"{header}{summary or 'nothing to do: the cluster and Ringfence agree'}"]
    if counts[Action.BASELINE]:
        lines[0] += f" ({counts[Action.BASELINE]} in sync)"
    width = max((len(str(item.key)) for item in shown), default=0)
    lines.extend(f"  {item.action.value:<9} {item.key!s:<{width}}  {item.reason}" for item in shown)
    return "\n".join(lines) + "\n"
