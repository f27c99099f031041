"""SQL that summarises stored flows: policy-board counts (from the rollup) and evaluation keys (previews)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from ringfence.flows.record import Flow
from services.common.db.flow_reads import READ_SETTINGS, STAGED_KINDS, flow_from_row
from services.common.db.rollup_windows import rollup_ranges


@dataclass(frozen=True, slots=True)
class PolicyHitCount:
    """Flows one policy rule (or end-of-tier action, ``rule_index`` -1) allowed, denied or passed.

    Enforced policies are counted from the enforced trace; staged policies (``staged``) from the
    trace where the log recorded them (the pending one, or ``all_policies`` of older logs).
    ``rule_index`` is None for hits of older logs that did not record it.
    """

    tier: str
    kind: str
    namespace: str | None
    name: str
    rule_index: int | None
    action: str
    staged: bool
    records: int
    flows: int
    packets: int
    bytes: int


# Whole hours of the window from the hourly rollup (from the 5-minute one while an hour is pending, see
# services.common.db.rollup_hours), the ragged ends from the 5-minute one. The
# ranges are computed by the caller (services.common.db.rollup_windows), so each part prunes to its own
# partitions and rows; a NULL bound makes its part empty (a range bound of the hourly part: unbounded).
POLICY_BOARD: Final = """
WITH hits AS (
    SELECT tier, kind, namespace, name, rule_index, action, records, num_flows, packets, bytes
    FROM policy_hits_1h
    WHERE $1::boolean AND bucket >= coalesce($2::timestamptz, '-infinity')
      AND bucket < coalesce($3::timestamptz, 'infinity') AND (NOT pending OR kind = ANY($8::text[]))
      AND bucket NOT IN (SELECT hour FROM rollup_hours_pending)
    UNION ALL
    SELECT h.tier, h.kind, h.namespace, h.name, h.rule_index, h.action, h.records, h.num_flows, h.packets, h.bytes
    FROM rollup_hours_pending AS p
    JOIN policy_hits_5m AS h ON h.bucket >= p.hour AND h.bucket < p.hour + interval '1 hour'
    WHERE $1::boolean AND p.hour >= coalesce($2::timestamptz, '-infinity')
      AND p.hour < coalesce($3::timestamptz, 'infinity')
      AND h.bucket >= coalesce($2::timestamptz, '-infinity') AND h.bucket < coalesce($3::timestamptz, 'infinity')
      AND (NOT h.pending OR h.kind = ANY($8::text[]))
    UNION ALL
    SELECT tier, kind, namespace, name, rule_index, action, records, num_flows, packets, bytes
    FROM policy_hits_5m
    WHERE bucket > $4::timestamptz AND bucket < $5::timestamptz AND (NOT pending OR kind = ANY($8::text[]))
    UNION ALL
    SELECT tier, kind, namespace, name, rule_index, action, records, num_flows, packets, bytes
    FROM policy_hits_5m
    WHERE bucket >= $6::timestamptz AND bucket < $7::timestamptz AND (NOT pending OR kind = ANY($8::text[]))
)
SELECT tier, kind, namespace, name, rule_index, action, sum(records) AS records, sum(num_flows) AS flows,
       sum(packets) AS packets, sum(bytes) AS bytes
FROM hits
GROUP BY tier, kind, namespace, name, rule_index, action
ORDER BY tier, kind, namespace NULLS FIRST, name, rule_index NULLS FIRST, action
"""


async def policy_board_counts(
    conn: asyncpg.Connection, from_: datetime | None, to: datetime | None
) -> list[PolicyHitCount]:
    """Per policy, rule and action, the flows of ``[from_, to)`` (widened to whole 5-minute buckets)."""
    async with conn.transaction():
        await conn.execute(READ_SETTINGS)
        rows = await conn.fetch(POLICY_BOARD, *rollup_ranges(from_, to), list(STAGED_KINDS))
    return [
        PolicyHitCount(
            row["tier"],
            row["kind"],
            row["namespace"],
            row["name"],
            row["rule_index"],
            row["action"],
            row["kind"] in STAGED_KINDS,
            int(row["records"]),
            int(row["flows"]),
            int(row["packets"]),
            int(row["bytes"]),
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class FlowKey:
    """Stored flows that a policy evaluates alike, merged: ``flow`` holds the facts evaluation reads
    (reporter, action, both endpoints with labels, IPs and ports, protocol, domains, destination
    service), the earliest start, the latest end and the summed counters; no traces. ``records`` is
    how many stored records it merges.
    """

    flow: Flow
    records: int


FLOW_KEYS: Final = """
WITH keys AS (
    SELECT reporter, action, proto,
           src_type, src_namespace, src_name, src_name_aggr, src_ip, src_port, src_labels, src_service_account,
           dst_type, dst_namespace, dst_name, dst_name_aggr, dst_ip, dst_port, dst_labels, dst_service_account,
           dst_domains, dst_service_namespace, dst_service_name, dst_service_port, dst_service_port_num,
           min(start_time) AS start_time, max(end_time) AS end_time, count(*) AS records,
           sum(num_flows) AS num_flows, sum(num_flows_started) AS num_flows_started,
           sum(num_flows_completed) AS num_flows_completed, sum(packets_in) AS packets_in,
           sum(packets_out) AS packets_out, sum(bytes_in) AS bytes_in, sum(bytes_out) AS bytes_out,
           sum(http_requests_allowed_in) AS http_requests_allowed_in,
           sum(http_requests_denied_in) AS http_requests_denied_in
    FROM flows
    WHERE start_time >= coalesce($1::timestamptz, '-infinity') AND start_time < coalesce($2::timestamptz, 'infinity')
      AND ($3::text IS NULL OR src_namespace = $3 OR dst_namespace = $3)
    GROUP BY reporter, action, proto,
           src_type, src_namespace, src_name, src_name_aggr, src_ip, src_port, src_labels, src_service_account,
           dst_type, dst_namespace, dst_name, dst_name_aggr, dst_ip, dst_port, dst_labels, dst_service_account,
           dst_domains, dst_service_namespace, dst_service_name, dst_service_port, dst_service_port_num
)
SELECT keys.*, host(keys.src_ip) AS src_ip_text, host(keys.dst_ip) AS dst_ip_text,
       sl.labels AS src_label_texts, dl.labels AS dst_label_texts
FROM keys
LEFT JOIN label_sets AS sl ON sl.id = keys.src_labels
LEFT JOIN label_sets AS dl ON dl.id = keys.dst_labels
"""


async def flow_keys(
    conn: asyncpg.Connection,
    from_: datetime | None,
    to: datetime | None,
    *,
    namespace: str | None = None,
    prefetch: int = 1000,
) -> AsyncIterator[FlowKey]:
    """Stream the evaluation keys of the flows starting in ``[from_, to)`` (of one namespace, either side).

    Rows come through a server-side cursor, so memory stays bounded however many keys the window has;
    the iteration runs inside a transaction on ``conn`` (a savepoint if one is open).
    """
    async with conn.transaction():
        await conn.execute(READ_SETTINGS)
        async for row in conn.cursor(FLOW_KEYS, from_, to, namespace, prefetch=prefetch):
            yield FlowKey(flow_from_row(row, with_traces=False), int(row["records"]))
