"""Ringfence -> cluster: server-side apply (field manager ``ringfence``) and deletion.

Every write is conditional on the cluster object still being the one the plan compared with: the
apply body carries its ``metadata.resourceVersion`` and a deletion its precondition, so an object
changed in the cluster between the plan and the write is refused by the API server (409) instead of
overwritten; the item is skipped and the next pass sees the change (as a conflict if Ringfence's
change still stands). ``force`` takes over fields other managers own: the three-way comparison has
already established that Ringfence holds the newer intent for the whole object.

The audit entry is written after the cluster accepted the write; if it cannot be written the next
pass finds both sides equal and records them as in sync.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ringfence.model import ResourceKey
from services.sync import journal
from services.sync.client import ApplyConflictError, ClusterClient, ClusterError
from services.sync.documents import apply_body
from services.sync.kinds import ClusterKind
from services.sync.plan import CLUSTER_ACTIONS, Action, PlanItem

logger = logging.getLogger(__name__)

Document = dict[str, Any]


@dataclass(slots=True)
class WriteReport:
    """What the writes did: keys per action, items skipped (changed meanwhile) and failures."""

    done: dict[Action, list[ResourceKey]] = field(default_factory=dict)
    skipped: list[tuple[ResourceKey, str]] = field(default_factory=list)
    failed: list[tuple[ResourceKey, str]] = field(default_factory=list)

    def count(self, action: Action) -> int:
        return len(self.done.get(action, []))


def body_of(item: PlanItem, kinds: Mapping[str, ClusterKind]) -> tuple[ClusterKind, Document]:
    """The cluster kind and apply body of an ``apply`` item."""
    if item.action is not Action.APPLY or item.ringfence is None:
        raise ValueError(f"{item.key}: only apply items have a body")
    kind = kinds[item.key.kind]
    version = None if item.cluster is None else item.cluster.resource_version
    return kind, apply_body(kind, item.ringfence.document, resource_version=version)


async def write_items(
    conn: asyncpg.Connection,
    client: ClusterClient,
    items: Iterable[PlanItem],
    kinds: Mapping[str, ClusterKind],
) -> WriteReport:
    """Carry out the cluster-side items (apply, delete) of a plan, in order."""
    report = WriteReport()
    for item in items:
        if item.action not in CLUSTER_ACTIONS:
            continue
        try:
            if item.action is Action.APPLY:
                await _apply(conn, client, item, kinds)
            else:
                await _delete(conn, client, item, kinds)
        except ApplyConflictError as error:
            report.skipped.append((item.key, f"changed in the cluster meanwhile ({error})"))
            continue
        except (ClusterError, OSError) as error:
            logger.warning("could not %s %s: %s", item.action, item.key, error)
            report.failed.append((item.key, str(error)))
            continue
        report.done.setdefault(item.action, []).append(item.key)
    return report


async def _apply(
    conn: asyncpg.Connection, client: ClusterClient, item: PlanItem, kinds: Mapping[str, ClusterKind]
) -> None:
    kind, body = body_of(item, kinds)
    assert item.ringfence is not None
    await asyncio.to_thread(client.apply, kind, body)
    before = None if item.cluster is None else item.cluster.document
    await journal.record(conn, journal.APPLIED, item.key, before=before, after=item.ringfence.document)


async def _delete(
    conn: asyncpg.Connection, client: ClusterClient, item: PlanItem, kinds: Mapping[str, ClusterKind]
) -> None:
    cluster = item.cluster
    if cluster is None:
        raise ValueError(f"{item.key}: nothing to delete in the cluster")
    kind = kinds[item.key.kind]
    await asyncio.to_thread(
        client.delete, kind, cluster.namespace, cluster.name, resource_version=cluster.resource_version
    )
    await journal.record(conn, journal.DELETED, item.key, before=cluster.document, after=None)
