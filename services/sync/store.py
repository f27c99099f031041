"""SQL the sync needs beyond the shared query modules: its bases and the workloads it sees in the cluster.

*Bases.* The sync keeps no table of its own: every time it brings a resource into agreement (an
import, a write-back, a conflict settled, or both sides found equal) it writes an audit entry whose
``after`` is the document both sides then hold. The latest such entry of a resource is its base
(:mod:`services.sync.plan`). The audit log is the natural home: those entries are what a person asks
about ("who changed this policy, and was it the cluster?"), and their ``after`` documents are exactly
the state to compare with.

*Workloads.* Pods fill ``inventory_workloads`` with the labels of their workload (the aggregate name
flow logs use, ``frontend-864f4fcdfd-*``), so flows that arrive without labels can be matched.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

import asyncpg

from ringfence.model import ResourceKey

SYNC_ACTOR: Final = "ringfence-sync"

Document = dict[str, Any]

LATEST_BASES: Final = """
SELECT DISTINCT ON (kind, coalesce(namespace, ''), name) kind, namespace, name, after
FROM audit_log
WHERE actor = $1 AND action = ANY($2::text[]) AND kind IS NOT NULL AND name IS NOT NULL
ORDER BY kind, coalesce(namespace, ''), name, id DESC
"""


async def bases(
    conn: asyncpg.Connection | asyncpg.Pool, actions: Iterable[str], *, actor: str = SYNC_ACTOR
) -> dict[ResourceKey, Document]:
    """The base document of every resource the sync brought into agreement (absent ones left out)."""
    rows = await conn.fetch(LATEST_BASES, actor, sorted(actions))
    return {
        ResourceKey(row["kind"], row["namespace"] or None, row["name"]): row["after"]
        for row in rows
        if row["after"] is not None
    }


# Labels replace what flows reported: the cluster is the authority on a workload's labels. The times
# stay those of flows when the workload was already seen there.
UPSERT_WORKLOAD: Final = """
INSERT INTO inventory_workloads AS w (namespace, name_aggr, labels, first_seen, last_seen)
VALUES ($1, $2, $3::text[], $4, $4)
ON CONFLICT (namespace, name_aggr) DO UPDATE SET labels = EXCLUDED.labels
WHERE w.labels IS DISTINCT FROM EXCLUDED.labels
"""


async def record_workloads(
    conn: asyncpg.Connection, workloads: Iterable[tuple[str, str, list[str]]], seen_at: datetime
) -> None:
    """Upsert ``(namespace, name_aggr, ["k=v", ...])`` workloads seen in the cluster at ``seen_at``."""
    await conn.executemany(UPSERT_WORKLOAD, [(ns, name, labels, seen_at) for ns, name, labels in workloads])
