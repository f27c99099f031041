"""Cluster -> Ringfence: import resources into the store, and namespaces and workloads into the inventory.

Each plan item is carried out in a transaction of its own, together with its audit entry, through the
shared resource store (:mod:`services.common.db.resources`): versions, history and the atomic
conflict check are the same as for a change made through the API. An item based on a Ringfence
version that changed in the meantime is skipped; the next pass sees the new state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from ringfence.flows.record import label_pairs
from ringfence.model import ResourceKey
from services.common.db import inventory
from services.common.db import resources as store
from services.sync import conflicts, journal
from services.sync.plan import STORE_ACTIONS, Action, PlanItem
from services.sync.store import SYNC_ACTOR, record_workloads

logger = logging.getLogger(__name__)

Document = dict[str, Any]


@dataclass(slots=True)
class ImportReport:
    """What an import did: the keys per action, and the items skipped with the reason."""

    done: dict[Action, list[ResourceKey]] = field(default_factory=dict)
    skipped: list[tuple[ResourceKey, str]] = field(default_factory=list)

    def count(self, action: Action) -> int:
        return len(self.done.get(action, []))


async def import_items(conn: asyncpg.Connection, items: Iterable[PlanItem]) -> ImportReport:
    """Carry out the store-side items (import, remove, conflict, baseline) of a plan, in order."""
    report = ImportReport()
    for item in items:
        if item.action not in STORE_ACTIONS:
            continue
        try:
            async with conn.transaction():
                await _carry_out(conn, item)
        except store.ResourceConflictError:
            report.skipped.append((item.key, "changed in Ringfence meanwhile; the next pass sees it"))
            continue
        except store.ResourceNotFoundError:
            report.skipped.append((item.key, "already removed from Ringfence"))
            continue
        report.done.setdefault(item.action, []).append(item.key)
    return report


async def _carry_out(conn: asyncpg.Connection, item: PlanItem) -> None:
    cluster = None if item.cluster is None else item.cluster.document
    ringfence = None if item.ringfence is None else item.ringfence.document
    expected = None if item.ringfence is None else item.ringfence.version
    if item.action is Action.BASELINE:
        await journal.record(conn, journal.BASELINE, item.key, before=None, after=cluster)
        return
    # Import, remove or conflict: the cluster's document (None: deleted there) replaces Ringfence's.
    change = store.ResourceChange(item.key, cluster, expected_version=expected)
    await store.apply_changes(conn, [change], actor=SYNC_ACTOR)
    if item.action is Action.CONFLICT:
        await conflicts.record_conflict(conn, item)
        logger.warning("conflict on %s: %s", item.key, item.reason)
    elif item.action is Action.IMPORT:
        await journal.record(conn, journal.IMPORTED, item.key, before=ringfence, after=cluster)
    elif item.action is Action.REMOVE:
        await journal.record(conn, journal.REMOVED, item.key, before=ringfence, after=None)


# --- inventory -----------------------------------------------------------------------------------


def workload_of(pod: Mapping[str, Any]) -> tuple[str, str, list[str]] | None:
    """``(namespace, name_aggr, ["k=v", ...])`` of a pod, as flow logs name its workload.

    Calico aggregates a pod's name to its generated prefix plus ``*`` (``frontend-864f4fcdfd-*`` for
    a ReplicaSet's pod, ``web-*`` for a StatefulSet's); a pod without ``generateName`` keeps its name.
    """
    metadata = pod.get("metadata") or {}
    namespace = metadata.get("namespace")
    name = metadata.get("name")
    if not namespace or not name:
        return None
    prefix = metadata.get("generateName")
    name_aggr = f"{prefix}*" if prefix else str(name)
    labels = [f"{key}={value}" for key, value in label_pairs(metadata.get("labels") or {})]
    return str(namespace), name_aggr, labels


async def import_inventory(
    conn: asyncpg.Connection,
    namespaces: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
) -> tuple[int, int]:
    """Record namespace labels and pod workloads; return how many namespaces and workloads changed."""
    known = {seen.name: seen.labels for seen in await inventory.list_namespaces(conn)}
    changed_namespaces = 0
    for namespace in namespaces:
        metadata = namespace.get("metadata") or {}
        name = metadata.get("name")
        labels = label_pairs(metadata.get("labels") or {})
        if name and known.get(name) != labels:
            await inventory.set_namespace_labels(conn, name, labels, now)
            changed_namespaces += 1
    workloads: dict[tuple[str, str], list[str]] = {}
    for pod in pods:
        workload = workload_of(pod)
        if workload is not None:
            workloads[workload[0], workload[1]] = workload[2]
    current = {
        (seen.namespace, seen.name_aggr): [f"{k}={v}" for k, v in seen.labels]
        for seen in await inventory.list_workloads(conn)
    }
    changed = [
        (ns, name, labels) for (ns, name), labels in sorted(workloads.items()) if current.get((ns, name)) != labels
    ]
    if changed:
        await record_workloads(conn, changed, now)
    return changed_namespaces, len(changed)
