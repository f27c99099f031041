"""Conflicts: a resource changed both in the cluster and in Ringfence since they last agreed.

Nothing is silently overwritten. The cluster wins, because it is what the dataplane enforces: its
document replaces Ringfence's (or Ringfence's copy is removed when the cluster deleted the
resource), and an audit entry ``sync.conflict`` keeps both versions (``before``: Ringfence's,
``after``: the cluster's), so the losing change can be read back and applied again on purpose. The
API shows these entries in ``auditLog``; :func:`recent_conflicts` reads them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ringfence.model import ResourceKey
from services.common.db import audit
from services.sync import journal
from services.sync.plan import Action, PlanItem
from services.sync.store import SYNC_ACTOR

Document = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RecordedConflict:
    """A conflict as the audit log keeps it."""

    id: int
    at: datetime
    key: ResourceKey
    ringfence: Document | None  # the version that lost
    cluster: Document | None  # the version that won (None: deleted in the cluster)


async def record_conflict(conn: asyncpg.Connection, item: PlanItem) -> int:
    """Record that ``item``'s cluster version replaced Ringfence's (in the caller's transaction)."""
    if item.action is not Action.CONFLICT:
        raise ValueError(f"{item.key} is not a conflict but {item.action}")
    ringfence = None
    if item.ringfence is not None:
        ringfence = _with_version(item.ringfence.document, str(item.ringfence.version))
    return await journal.record(
        conn,
        journal.CONFLICT,
        item.key,
        before=ringfence,
        after=None if item.cluster is None else item.cluster.document,
    )


async def recent_conflicts(conn: asyncpg.Connection | asyncpg.Pool, *, first: int = 50) -> list[RecordedConflict]:
    """The latest conflicts, newest first."""
    entries, _ = await audit.page(conn, first=first, where=audit.AuditFilter(actor=SYNC_ACTOR, action=journal.CONFLICT))
    return [
        RecordedConflict(
            id=entry.id,
            at=entry.at,
            key=ResourceKey(entry.kind or "", entry.namespace, entry.name or ""),
            ringfence=entry.before,
            cluster=entry.after,
        )
        for entry in entries
    ]


def _with_version(document: Document, version: str) -> Document:
    return {**document, "metadata": {**document.get("metadata", {}), "resourceVersion": version}}
