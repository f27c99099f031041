"""SQL of the flow store's write path: partitions, interned values, staged batches and rollups.

A batch is written in one transaction by the collector: interned label sets and traces first, then
the rows COPYed (binary) straight into ``flows``, then the batch's sums, computed by the collector,
added to the rollups (flow edges and policy hits, each per 5 minutes and per hour). Rows are
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
    "add_rollups",
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

ROLLUP_BUCKET_SECONDS: Final = 300


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


async def ensure_partitions(conn: asyncpg.Connection, first_day: date, last_day: date) -> int:
    """Create the missing daily partitions from ``first_day`` to ``last_day``; return how many tables were made."""
    created: int = await conn.fetchval(ENSURE_PARTITIONS, first_day, last_day)
    return created


async def drop_expired_partitions(conn: asyncpg.Connection, now: datetime, retention_days: int) -> list[str]:
    """Drop the daily partitions (flows and rollups) that end ``retention_days`` or more before ``now``."""
    cutoff = now - timedelta(days=retention_days)
    rows = await conn.fetch(DROP_PARTITIONS, cutoff)
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


def _time(seconds: int) -> datetime:
    # Records of a batch share a few window bounds: one datetime each, not one per row.
    moment = _TIMES.get(seconds)
    if moment is None:
        if len(_TIMES) >= _TIMES_LIMIT:
            _TIMES.clear()
        moment = _TIMES[seconds] = datetime.fromtimestamp(seconds, UTC)
    return moment


async def copy_rows(conn: asyncpg.Connection, rows: Sequence[StageRow]) -> None:
    """COPY (binary) staging rows straight into ``flows``; their daily partitions must exist."""
    time = _time
    records = [(time(row[0]), time(row[1]), *row[2:]) for row in rows]
    await conn.copy_records_to_table("flows", records=records, columns=FLOW_COLUMNS)


# A batch reaches the rollups as groups: its rows grouped by everything the rollups and the inventory
# read, summed by the collector, sent as one JSON array of arrays in GROUP_COLUMNS order.
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


# One statement, one round trip: each rollup from an aggregate of the groups, keys in index order so
# concurrent collectors lock rollup rows in the same order.
ADD_ROLLUPS: Final = """
WITH groups AS MATERIALIZED (
SELECT (d->>0)::bigint AS start_s, d->>1 AS src_namespace, d->>2 AS src_name_aggr, d->>3 AS src_type,
       d->>4 AS dst_namespace, d->>5 AS dst_name_aggr, d->>6 AS dst_type, (d->>7)::integer AS dst_port,
       d->>8 AS proto, d->>9 AS action, d->>10 AS reporter, (d->>11)::bigint AS trace_set,
       (d->>12)::bigint AS src_labels, (d->>13)::bigint AS dst_labels, (d->>14)::bigint AS end_s,
       (d->>15)::numeric AS num_flows, (d->>16)::numeric AS packets_in, (d->>17)::numeric AS packets_out,
       (d->>18)::numeric AS bytes_in, (d->>19)::numeric AS bytes_out, (d->>20)::bigint AS records
FROM jsonb_array_elements($1::text::jsonb) AS d
), edges AS (
    INSERT INTO flow_edges_5m AS e (
        src_namespace, bucket, src_name_aggr, src_type, dst_namespace, dst_name_aggr, dst_type,
        dst_port, proto, action, reporter, records, num_flows, packets_in, packets_out, bytes_in, bytes_out
    )
    SELECT src_namespace, to_timestamp(start_s - start_s % 300), src_name_aggr, src_type,
           dst_namespace, dst_name_aggr, dst_type, dst_port, proto, action, reporter,
           sum(records), sum(num_flows), sum(packets_in), sum(packets_out), sum(bytes_in), sum(bytes_out)
    FROM groups
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
    ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
    ON CONFLICT (
        src_namespace, bucket, src_name_aggr, src_type, dst_namespace, dst_name_aggr, dst_type,
        dst_port, proto, action, reporter
    ) DO UPDATE SET
        records = e.records + EXCLUDED.records,
        num_flows = e.num_flows + EXCLUDED.num_flows,
        packets_in = e.packets_in + EXCLUDED.packets_in,
        packets_out = e.packets_out + EXCLUDED.packets_out,
        bytes_in = e.bytes_in + EXCLUDED.bytes_in,
        bytes_out = e.bytes_out + EXCLUDED.bytes_out
), edges_hourly AS (
    INSERT INTO flow_edges_1h AS e (
        src_namespace, bucket, src_name_aggr, src_type, dst_namespace, dst_name_aggr, dst_type,
        dst_port, proto, action, reporter, records, num_flows, packets_in, packets_out, bytes_in, bytes_out
    )
    SELECT src_namespace, to_timestamp(start_s - start_s % 3600), src_name_aggr, src_type,
           dst_namespace, dst_name_aggr, dst_type, dst_port, proto, action, reporter,
           sum(records), sum(num_flows), sum(packets_in), sum(packets_out), sum(bytes_in), sum(bytes_out)
    FROM groups
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
    ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
    ON CONFLICT (
        src_namespace, bucket, src_name_aggr, src_type, dst_namespace, dst_name_aggr, dst_type,
        dst_port, proto, action, reporter
    ) DO UPDATE SET
        records = e.records + EXCLUDED.records,
        num_flows = e.num_flows + EXCLUDED.num_flows,
        packets_in = e.packets_in + EXCLUDED.packets_in,
        packets_out = e.packets_out + EXCLUDED.packets_out,
        bytes_in = e.bytes_in + EXCLUDED.bytes_in,
        bytes_out = e.bytes_out + EXCLUDED.bytes_out
), per_trace AS (
    -- Per trace first: a batch holds few distinct traces, and each has several hits.
    SELECT start_s - start_s % 300 AS bucket_s, trace_set, sum(records) AS records, sum(num_flows) AS num_flows,
           sum(packets_in + packets_out) AS packets, sum(bytes_in + bytes_out) AS bytes
    FROM groups WHERE trace_set IS NOT NULL
    GROUP BY 1, 2
), hits AS MATERIALIZED (
    SELECT t.bucket_s, h.pending, h.tier, h.kind, h.namespace, h.name, h.rule_index, h.action,
           sum(t.records) AS records, sum(t.num_flows) AS num_flows, sum(t.packets) AS packets,
           sum(t.bytes) AS bytes
    FROM per_trace AS t JOIN trace_hits AS h ON h.trace_set = t.trace_set
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
), five_minutes AS (
    INSERT INTO policy_hits_5m AS p (
        bucket, pending, tier, kind, namespace, name, rule_index, action, records, num_flows, packets, bytes
    )
    SELECT to_timestamp(bucket_s), pending, tier, kind, namespace, name, rule_index, action,
           records, num_flows, packets, bytes
    FROM hits
    ORDER BY 1, 2, 3, 4, 5, 6, 7, 8
    ON CONFLICT (bucket, pending, tier, kind, namespace, name, rule_index, action) DO UPDATE SET
        records = p.records + EXCLUDED.records,
        num_flows = p.num_flows + EXCLUDED.num_flows,
        packets = p.packets + EXCLUDED.packets,
        bytes = p.bytes + EXCLUDED.bytes
)
INSERT INTO policy_hits_1h AS p (
    bucket, pending, tier, kind, namespace, name, rule_index, action, records, num_flows, packets, bytes
)
SELECT to_timestamp(bucket_s - bucket_s % 3600), pending, tier, kind, namespace, name, rule_index, action,
       sum(records), sum(num_flows), sum(packets), sum(bytes)
FROM hits
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
ORDER BY 1, 2, 3, 4, 5, 6, 7, 8
ON CONFLICT (bucket, pending, tier, kind, namespace, name, rule_index, action) DO UPDATE SET
    records = p.records + EXCLUDED.records,
    num_flows = p.num_flows + EXCLUDED.num_flows,
    packets = p.packets + EXCLUDED.packets,
    bytes = p.bytes + EXCLUDED.bytes
"""


async def add_rollups(conn: asyncpg.Connection, groups: str) -> None:
    """Add a batch's ``groups`` (JSON, see :data:`GROUP_COLUMNS`) to the rollups, in the batch's transaction.

    The traces the groups name must be stored already (earlier in the same transaction).
    """
    await conn.execute(ADD_ROLLUPS, groups)
