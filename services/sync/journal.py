"""The sync's entries in the audit log: what it did to which resource, and the state it left behind.

Each entry's ``after`` is the document the cluster and Ringfence both hold once the action is done
(None when the resource is gone from both): the base of the next three-way comparison
(:mod:`services.sync.store`).
"""

from __future__ import annotations

from typing import Any, Final

import asyncpg

from ringfence.model import ResourceKey
from services.common.db import audit
from services.sync.store import SYNC_ACTOR

Document = dict[str, Any]

IMPORTED: Final = "sync.import"  # the cluster's document copied into Ringfence
REMOVED: Final = "sync.remove"  # deleted in the cluster, removed from Ringfence
APPLIED: Final = "sync.apply"  # Ringfence's document applied to the cluster
DELETED: Final = "sync.delete"  # deleted in Ringfence, deleted in the cluster
CONFLICT: Final = "sync.conflict"  # changed on both sides; the cluster's document won
BASELINE: Final = "sync.baseline"  # found equal on both sides

BASE_ACTIONS: Final = frozenset({IMPORTED, REMOVED, APPLIED, DELETED, CONFLICT, BASELINE})


async def record(
    conn: asyncpg.Connection,
    action: str,
    key: ResourceKey,
    *,
    before: Document | None,
    after: Document | None,
) -> int:
    """Append one sync entry (in the caller's transaction); return its id."""
    if action not in BASE_ACTIONS:
        raise ValueError(f"not a sync action: {action!r}")
    return await audit.record(
        conn,
        actor=SYNC_ACTOR,
        action=action,
        kind=key.kind,
        namespace=key.namespace,
        name=key.name,
        before=before,
        after=after,
    )
