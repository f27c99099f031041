"""SQL of the flow store's write path: partitions, interned values, staged batches and rollups.

A batch is written in one transaction by the collector: interned label sets and traces first, then
the rows COPYed (binary) straight into ``flows``, then the batch's partial sums, computed by the
collector, appended to the 5-minute rollups (flow edges and policy hits); the hourly rollups are rebuilt
from those once an hour settles (:mod:`services.common.db.rollup_hours`). Rows are
built as staging rows (:data:`STAGE_COLUMNS`, times as unix seconds), the form the collector's
parsers and the live flow tail share.

The read side lives in :mod:`services.common.db.flow_reads` (flow pages, the flow graph) and
:mod:`services.common.db.flow_summaries` (policy board, evaluation keys); both are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, TypeAlias

import asyncpg
import orjson

from services.common.db import rollup_hours
from services.common.db.flow_reads import (
    CursorError,
    FlowFilter,
    FlowGraph,
    FlowPage,
    GraphEdge,
    GraphNode,
    StoredFlow,
    count_flows,
    flow_graph,
    query_flows,
)
from services.common.db.flow_summaries import FlowKey, PolicyHitCount, flow_keys, policy_board_counts

__all__ = [
    "FLOW_COLUMNS",
    "STAGE_COLUMNS",
    "CursorError",
    "FlowFilter",
    "FlowGraph",
    "FlowKey",
    "FlowPage",
    "GraphEdge",
    "GraphNode",
    "InternCollisionError",
    "PolicyHitCount",
    "StageRow",
    "StoredFlow",
    "TraceSet",
    "copy_rows",
    "count_flows",
    "drop_expired_partitions",
    "ensure_partitions",
    "flow_graph",
    "flow_keys",
    "insert_label_sets",
    "insert_trace_sets",
    "policy_board_counts",
    "query_flows",
]

StageRow: TypeAlias = tuple[Any, ...]
"""One flow as the collector builds it, in :data:`STAGE_COLUMNS` order (times as unix seconds)."""

TraceHitRow: TypeAlias = tuple[bool, int, str, str, str | None, str, str, int | None]
"""(pending, position, tier, kind, namespace, policy name, action, rule index) of one hit."""

STAGE_COLUMNS: Final = (
    "start_s",
    "end_s",
    "reporter",
    "action",
    "proto",
    "src_type",
    "src_namespace",
    "src_name",
    "src_name_aggr",
    "src_ip",
    "src_port",
    "src_labels",
    "src_service_account",
    "dst_type",
    "dst_namespace",
    "dst_name",
    "dst_name_aggr",
    "dst_ip",
    "dst_port",
    "dst_labels",
    "dst_service_account",
    "dst_domains",
    "dst_service_namespace",
    "dst_service_name",
    "dst_service_port",
    "dst_service_port_num",
    "host",
    "num_flows",
    "num_flows_started",
    "num_flows_completed",
    "packets_in",
    "packets_out",
    "bytes_in",
    "bytes_out",
    "http_requests_allowed_in",
    "http_requests_denied_in",
    "trace_set",
)

ROLLUP_BUCKET_SECONDS: Final = rollup_hours.BUCKET_SECONDS


@dataclass(frozen=True, slots=True)
class TraceSet:
    """One interned pair of traces: hit strings as stored and the parsed hits."""

    id: int
    enforced: tuple[str, ...]
    pending: tuple[str, ...]
    hits: tuple[TraceHitRow, ...]


class InternCollisionError(RuntimeError):
    """Two different values hashed to the same 64-bit id (never seen in practice; refuse, do not mix)."""


# --- partitions ----------------------------------------------------------------------------------

ENSURE_PARTITIONS: Final = "SELECT ensure_flow_partitions($1::date, $2::date)"
DROP_PARTITIONS: Final = "SELECT name FROM drop_flow_partitions($1::timestamptz) AS name"
# Hours whose partitions are dropped have nothing left to compact. Partitions end at midnight: an hour
# before the cutoff's day is gone with them.
DROP_PENDING_HOURS: Final = """
DELETE FROM rollup_hours_pending
WHERE hour < date_trunc('day', $1::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
"""


async def ensure_partitions(conn: asyncpg.Connection, first_day: date, last_day: date) -> int:
    """Create the missing daily partitions from ``first_day`` to ``last_day``; return how many tables were made."""
    created: int = await conn.fetchval(ENSURE_PARTITIONS, first_day, last_day)
    return created


async def drop_expired_partitions(conn: asyncpg.Connection, now: datetime, retention_days: int) -> list[str]:
    """Drop the daily partitions (flows and rollups) that end ``retention_days`` or more before ``now``."""
    cutoff = now - timedelta(days=retention_days)
    async with conn.transaction():
        rows = await conn.fetch(DROP_PARTITIONS, cutoff)
        await conn.execute(DROP_PENDING_HOURS, cutoff)
    return [row["name"] for row in rows]


def day_of(unix_day: int) -> date:
    """The UTC date of a day number (unix seconds // 86400)."""
    return date(1970, 1, 1) + timedelta(days=unix_day)


def utc(seconds: int) -> datetime:
    """Unix seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


# --- interned values -----------------------------------------------------------------------------

# The arrays travel as JSON (one parameter for any number of label sets of any lengths). The
# CTE's snapshot predates the insert, so the comparison sees only rows that existed before: an
# existing id with other labels is a hash collision.
INSERT_LABEL_SETS: Final = """
WITH new AS (
    SELECT (item->>0)::bigint AS id, ARRAY(SELECT jsonb_array_elements_text(item->1)) AS labels
    FROM jsonb_array_elements($1::text::jsonb) AS item
), inserted AS (
    INSERT INTO label_sets (id, labels) SELECT id, labels FROM new ORDER BY id ON CONFLICT (id) DO NOTHING
)
SELECT new.id FROM new JOIN label_sets USING (id) WHERE label_sets.labels <> new.labels
"""


async def insert_label_sets(conn: asyncpg.Connection, label_sets: Mapping[int, Sequence[str]]) -> None:
    """Store label sets not stored yet; raise :class:`InternCollisionError` on a hash collision."""
    if not label_sets:
        return
    payload = [[str(label_id), list(labels)] for label_id, labels in label_sets.items()]
    collided = await conn.fetch(INSERT_LABEL_SETS, orjson.dumps(payload).decode())
    if collided:
        raise InternCollisionError(f"label set id {collided[0]['id']} names two different label sets")


INSERT_TRACE_SETS: Final = """
WITH new AS (
    SELECT (item->>0)::bigint AS id,
           ARRAY(SELECT jsonb_array_elements_text(item->1)) AS enforced,
           ARRAY(SELECT jsonb_array_elements_text(item->2)) AS pending
    FROM jsonb_array_elements($1::text::jsonb) AS item
), inserted AS (
    INSERT INTO trace_sets (id, enforced, pending) SELECT id, enforced, pending FROM new ORDER BY id
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), hits AS (
    INSERT INTO trace_hits (trace_set, pending, position, tier, kind, namespace, name, action, rule_index)
    SELECT (hit->>0)::bigint, (hit->>1)::boolean, (hit->>2)::smallint, hit->>3, hit->>4, hit->>5, hit->>6,
           hit->>7, (hit->>8)::integer
    FROM jsonb_array_elements($2::text::jsonb) AS hit
    WHERE (hit->>0)::bigint IN (SELECT id FROM inserted)
)
SELECT new.id FROM new JOIN trace_sets USING (id)
WHERE trace_sets.enforced <> new.enforced OR trace_sets.pending <> new.pending
"""


async def insert_trace_sets(conn: asyncpg.Connection, trace_sets: Iterable[TraceSet]) -> None:
    """Store traces (and their parsed hits) not stored yet; raise :class:`InternCollisionError` on a collision."""
    sets = list(trace_sets)
    if not sets:
        return
    payload = [[str(trace.id), list(trace.enforced), list(trace.pending)] for trace in sets]
    hits = [[str(trace.id), *hit] for trace in sets for hit in trace.hits]
    collided = await conn.fetch(INSERT_TRACE_SETS, orjson.dumps(payload).decode(), orjson.dumps(hits).decode())
    if collided:
        raise InternCollisionError(f"trace set id {collided[0]['id']} names two different traces")


# --- rows and rollups ----------------------------------------------------------------------------

# The columns of ``flows`` a batch fills, in staging-row order (times as timestamptz, addresses as inet).
FLOW_COLUMNS: Final = ("start_time", "end_time", *STAGE_COLUMNS[2:])

_TIMES: dict[int, datetime] = {}
_TIMES_LIMIT: Final = 65_536


def cached_time(seconds: int) -> datetime:
    """Unix seconds as an aware UTC datetime, cached: a batch's records and rollup rows share a few window bounds."""
    moment = _TIMES.get(seconds)
    if moment is None:
        if len(_TIMES) >= _TIMES_LIMIT:
            _TIMES.clear()
        moment = _TIMES[seconds] = datetime.fromtimestamp(seconds, UTC)
    return moment


async def copy_rows(conn: asyncpg.Connection, rows: Sequence[StageRow]) -> None:
    """COPY (binary) staging rows straight into ``flows``; their daily partitions must exist."""
    time = cached_time
    records = [(time(row[0]), time(row[1]), *row[2:]) for row in rows]
    await conn.copy_records_to_table("flows", records=records, columns=FLOW_COLUMNS)


# The collector first groups a batch's rows by everything the rollups and the inventory read, summed
# (services.collector.rollups), in GROUP_COLUMNS order.
GROUP_COLUMNS: Final = (
    "start_s",
    "src_namespace",
    "src_name_aggr",
    "src_type",
    "dst_namespace",
    "dst_name_aggr",
    "dst_type",
    "dst_port",
    "proto",
    "action",
    "reporter",
    "trace_set",
    "src_labels",
    "dst_labels",
    "end_s",  # the latest end of the group's rows; the others are sums
    "num_flows",
    "packets_in",
    "packets_out",
    "bytes_in",
    "bytes_out",
    "records",
)


# A batch's partial sums for the 5-minute rollups, computed by the collector and appended with COPY
# (several rows may share a key and bucket: readers sum; compaction merges them).
EDGE_DELTA_COLUMNS: Final = (
    "bucket",
    *GROUP_COLUMNS[1 : GROUP_COLUMNS.index("trace_set")],  # the edge: src_namespace .. reporter
    "records",
    "num_flows",
    "packets_in",
    "packets_out",
    "bytes_in",
    "bytes_out",
)
HIT_DELTA_COLUMNS: Final = (
    "bucket",
    "pending",
    "tier",
    "kind",
    "namespace",
    "name",
    "rule_index",
    "action",
    "records",
    "num_flows",
    "packets",
    "bytes",
)
