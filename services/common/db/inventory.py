"""SQL for the inventory of what flows have shown: namespaces and workloads (``name_aggr``) with labels.

The collector records them per batch from its own sums, in the batch's transaction, so namespace
selectors and the flow graph have something to stand on before any cluster sync exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg
import orjson

from ringfence.flows.record import LabelPairs, parse_label_list


@dataclass(frozen=True, slots=True)
class SeenNamespace:
    """A namespace flows mentioned; ``labels`` None when not known (flow logs do not carry them)."""

    name: str
    labels: LabelPairs | None
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class SeenWorkload:
    """A workload (pods aggregated by ``name_aggr``) flows mentioned, with its most recent labels."""

    namespace: str
    name_aggr: str
    labels: LabelPairs
    first_seen: datetime
    last_seen: datetime


# Rows are only rewritten when they learn something (an earlier first or later last sighting, new
# labels), so a steady stream of the same workloads does not churn the table on every batch. The
# updates keep "the labels of the most recent flow that carried any". A batch arrives as its
# sightings, one JSON array per endpoint: [namespace, name_aggr, type, first start, last end, label set].
RECORD_SEEN: Final = """
WITH seen AS MATERIALIZED (
    SELECT d->>0 AS namespace, d->>1 AS name_aggr, d->>2 AS type, (d->>3)::bigint AS first_s,
           (d->>4)::bigint AS last_s, (d->>5)::bigint AS label_set
    FROM jsonb_array_elements($1::text::jsonb) AS d
), workloads AS (
    INSERT INTO inventory_workloads AS w (namespace, name_aggr, labels, first_seen, last_seen)
    SELECT seen.namespace, seen.name_aggr, coalesce(label_sets.labels, '{}'), to_timestamp(first_s),
           to_timestamp(last_s)
    FROM seen LEFT JOIN label_sets ON label_sets.id = seen.label_set
    WHERE seen.type = 'wep'
    ORDER BY 1, 2
    ON CONFLICT (namespace, name_aggr) DO UPDATE SET
        first_seen = least(w.first_seen, EXCLUDED.first_seen),
        last_seen = greatest(w.last_seen, EXCLUDED.last_seen),
        labels = CASE
            WHEN cardinality(EXCLUDED.labels) > 0
                 AND (EXCLUDED.last_seen >= w.last_seen OR cardinality(w.labels) = 0)
            THEN EXCLUDED.labels ELSE w.labels END
    WHERE EXCLUDED.first_seen < w.first_seen
       OR EXCLUDED.last_seen > w.last_seen
       OR (cardinality(EXCLUDED.labels) > 0 AND EXCLUDED.labels <> w.labels AND EXCLUDED.last_seen >= w.last_seen)
)
INSERT INTO inventory_namespaces AS n (name, labels, first_seen, last_seen)
SELECT namespace, NULL, to_timestamp(min(first_s)), to_timestamp(max(last_s))
FROM seen GROUP BY namespace ORDER BY namespace
ON CONFLICT (name) DO UPDATE SET
    first_seen = least(n.first_seen, EXCLUDED.first_seen),
    last_seen = greatest(n.last_seen, EXCLUDED.last_seen)
WHERE EXCLUDED.first_seen < n.first_seen OR EXCLUDED.last_seen > n.last_seen
"""

Sighting = tuple[str, str, str, int, int, int | None]
"""(namespace, name_aggr, endpoint type, first start, last end, label set of the last flow with labels)."""


async def record_seen(conn: asyncpg.Connection, sightings: Sequence[Sighting]) -> None:
    """Upsert a batch's ``sightings`` of namespaces and workloads (``wep``), in the batch's transaction.

    Label sets they name must be stored already (earlier in the same transaction).
    """
    if sightings:
        await conn.execute(RECORD_SEEN, orjson.dumps(sightings).decode())


LIST_NAMESPACES: Final = "SELECT name, labels, first_seen, last_seen FROM inventory_namespaces ORDER BY name"


async def list_namespaces(conn: asyncpg.Connection | asyncpg.Pool) -> list[SeenNamespace]:
    """Every namespace seen in flows, by name."""
    rows = await conn.fetch(LIST_NAMESPACES)
    return [
        SeenNamespace(
            row["name"],
            None if row["labels"] is None else parse_label_list(row["labels"]),
            row["first_seen"],
            row["last_seen"],
        )
        for row in rows
    ]


SET_NAMESPACE_LABELS: Final = """
INSERT INTO inventory_namespaces (name, labels, first_seen, last_seen) VALUES ($1, $2::text[], $3, $3)
ON CONFLICT (name) DO UPDATE SET labels = EXCLUDED.labels
"""


async def set_namespace_labels(conn: asyncpg.Connection, name: str, labels: LabelPairs, seen_at: datetime) -> None:
    """Record a namespace's labels when a source knows them (a sync, a manifest)."""
    await conn.execute(SET_NAMESPACE_LABELS, name, [f"{key}={value}" for key, value in labels], seen_at)


LIST_WORKLOADS: Final = """
SELECT namespace, name_aggr, labels, first_seen, last_seen FROM inventory_workloads
WHERE $1::text IS NULL OR namespace = $1
ORDER BY namespace, name_aggr
"""


async def list_workloads(conn: asyncpg.Connection | asyncpg.Pool, namespace: str | None = None) -> list[SeenWorkload]:
    """Workloads seen in flows (of one namespace, or all), by namespace and name."""
    rows = await conn.fetch(LIST_WORKLOADS, namespace)
    return [
        SeenWorkload(
            row["namespace"], row["name_aggr"], parse_label_list(row["labels"]), row["first_seen"], row["last_seen"]
        )
        for row in rows
    ]
