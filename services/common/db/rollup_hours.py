"""The hourly rollups: hours marked by the batches that touch them, rebuilt once they settle.

A batch appends its partial sums to the 5-minute rollups (``flow_edges_5m``, ``policy_hits_5m``) and
marks the UTC hours it touched in ``rollup_hours_pending`` (:func:`mark_hours`). :func:`compact` later
takes each pending hour: rebuilds the hour's rows of ``flow_edges_1h`` and ``policy_hits_1h`` from its
5-minute rows, merges the 5-minute partial rows that share a bucket and key when there are many
(:data:`MERGE_RATIO`), and clears the mark, in one transaction.
Readers take whole hours from the hourly rollups unless they are pending, and pending hours from the
5-minute rollups (:mod:`services.common.db.flow_reads`, :mod:`services.common.db.flow_summaries`), so
every answer counts each stored record once whether its hour was compacted or not.

An advisory lock per hour keeps the two apart: a batch holds its hours' locks shared until it commits
(batches do not wait for each other); compaction tries the lock exclusively and leaves an hour that a
batch is writing to its next round. A batch that starts while an hour is being compacted waits for the
compaction to commit and then marks the hour again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import asyncpg

logger = logging.getLogger(__name__)

# Locks in ascending order, then marks: a hour first marked by two batches at once makes the second
# wait for the first to commit, never a cycle.
MARK_HOURS: Final = """
WITH locked AS MATERIALIZED (
    SELECT hour, pg_advisory_xact_lock_shared(hashtext('ringfence.rollup_hours'), hour)
    FROM unnest($1::integer[]) AS hour ORDER BY hour
)
INSERT INTO rollup_hours_pending (hour, marked_at)
SELECT to_timestamp(hour::bigint * 3600), now() FROM locked ORDER BY hour
ON CONFLICT (hour) DO NOTHING
"""


async def mark_hours(conn: asyncpg.Connection, hours: Iterable[int]) -> None:
    """Mark ``hours`` (unix seconds // 3600) pending and hold their locks shared, in the caller's transaction."""
    await conn.execute(MARK_HOURS, sorted(set(hours)))


PENDING_HOURS: Final = """
SELECT hour FROM rollup_hours_pending
WHERE marked_at <= coalesce($1::timestamptz, 'infinity')
ORDER BY hour
"""

TRY_LOCK: Final = "SELECT pg_try_advisory_xact_lock(hashtext('ringfence.rollup_hours'), $1::integer)"
CLEAR_MARK: Final = "DELETE FROM rollup_hours_pending WHERE hour = $1 RETURNING hour"

_EDGE_KEY: Final = (
    "src_namespace, src_name_aggr, src_type, dst_namespace, dst_name_aggr, dst_type, dst_port, proto, action, reporter"
)
_EDGE_COUNTERS: Final = ("records", "num_flows", "packets_in", "packets_out", "bytes_in", "bytes_out")
_HIT_KEY: Final = "pending, tier, kind, namespace, name, rule_index, action"
_HIT_COUNTERS: Final = ("records", "num_flows", "packets", "bytes")


BUCKET_SECONDS: Final = 300
"""The width of a 5-minute bucket."""


def _sums(counters: tuple[str, ...], cast: str = "") -> str:
    return ", ".join(f"sum({name}){cast} AS {name}" for name in counters)


def _merge(table: str, key: str, counters: tuple[str, ...]) -> str:
    """The statement that replaces the partial rows of one hour ($1 to $2) sharing a key by one row each.

    An hour lies inside one daily partition, so the rows' ctids name them without ambiguity.
    """
    names = ", ".join(counters)
    return f"""
WITH merged AS MATERIALIZED (
    SELECT bucket, {key}, array_agg(ctid) AS parts, {_sums(counters, "::bigint")}
    FROM {table} WHERE bucket >= $1 AND bucket < $2
    GROUP BY bucket, {key}
    HAVING count(*) > 1
), gone AS (
    DELETE FROM {table} WHERE bucket >= $1 AND bucket < $2 AND ctid IN (SELECT unnest(parts) FROM merged)
)
INSERT INTO {table} (bucket, {key}, {names})
SELECT bucket, {key}, {names} FROM merged
"""  # noqa: S608 - names are this module's constants


def _rebuild(hourly: str, five_minutes: str, key: str, counters: tuple[str, ...]) -> tuple[str, str]:
    """The statements that replace the hourly rows of one hour ($1 to $2) by the sums of its 5-minute rows.

    The second answers how many 5-minute rows the hour holds and at most how many it would hold merged
    (per key, the buckets from its first to its last), which tells whether merging them is worth its cost.
    """
    names = ", ".join(counters)
    return (
        f"DELETE FROM {hourly} WHERE bucket = $1",  # noqa: S608 - names are this module's constants
        f"""
WITH grouped AS MATERIALIZED (
    SELECT {key}, {_sums(counters)}, count(*) AS parts,
           extract(epoch FROM max(bucket) - min(bucket))::bigint / {BUCKET_SECONDS} + 1 AS buckets
    FROM {five_minutes} WHERE bucket >= $1 AND bucket < $2
    GROUP BY {key}
), built AS (
    INSERT INTO {hourly} (bucket, {key}, {names}) SELECT $1, {key}, {names} FROM grouped
)
SELECT coalesce(sum(parts), 0)::bigint AS parts, coalesce(sum(buckets), 0)::bigint AS merged FROM grouped
""",  # noqa: S608 - names are this module's constants
    )


MERGE_RATIO: Final = 1.5
"""Partial 5-minute rows are merged when an hour holds this many times the rows it would hold merged.

Merging costs a grouping of the whole hour by bucket and key. A live collector's batches of a second
leave hundreds of partial rows per bucket and key, which merging folds into one; ``ringfence ingest``'s
batches of thousands of records leave almost none (about one row in 3,000 on ``bench/ingest.py``), and
merging them cost more than half of the compaction. Readers sum the partial rows either way."""


@dataclass(frozen=True, slots=True)
class CompactionReport:
    """What one :func:`compact` call did: hours rebuilt, hours left because a batch was writing to them."""

    compacted: int
    busy: int


async def compact(conn: asyncpg.Connection, *, marked_before: datetime | None = None) -> CompactionReport:
    """Rebuild the hourly rollups of the pending hours marked at or before ``marked_before`` (None: all)."""
    hours: list[datetime] = [row["hour"] for row in await conn.fetch(PENDING_HOURS, marked_before)]
    compacted = busy = 0
    for hour in hours:
        if await compact_hour(conn, hour):
            compacted += 1
        else:
            busy += 1
    return CompactionReport(compacted, busy)


async def compact_hour(conn: asyncpg.Connection, hour: datetime) -> bool:
    """Compact one pending ``hour``; False when a batch holds it (nothing done)."""
    number = int(hour.timestamp()) // 3600
    end = hour + timedelta(hours=1)
    async with conn.transaction():
        if not await conn.fetchval(TRY_LOCK, number):
            return False
        if await conn.fetchval(CLEAR_MARK, hour) is None:
            return True  # another compactor did it since we listed the hours
        for merge, (clear, rebuild) in _STATEMENTS:
            await conn.execute(clear, hour)
            counts = await conn.fetchrow(rebuild, hour, end)
            if counts["parts"] > counts["merged"] * MERGE_RATIO:
                await _merge_partials(conn, merge, hour, end)
    return True


async def _merge_partials(conn: asyncpg.Connection, statement: str, hour: datetime, end: datetime) -> None:
    try:
        async with conn.transaction():  # a savepoint: an overflow undoes only the merge
            await conn.execute(statement, hour, end)
    except asyncpg.NumericValueOutOfRangeError:
        # Sums past 2**63 cannot be merged into one 64-bit row; the partial rows stay (readers sum them).
        logger.warning("rollup rows of the hour from %s are too large to merge; left as they are", hour)


_STATEMENTS: Final = (
    (
        _merge("flow_edges_5m", _EDGE_KEY, _EDGE_COUNTERS),
        _rebuild("flow_edges_1h", "flow_edges_5m", _EDGE_KEY, _EDGE_COUNTERS),
    ),
    (
        _merge("policy_hits_5m", _HIT_KEY, _HIT_COUNTERS),
        _rebuild("policy_hits_1h", "policy_hits_5m", _HIT_KEY, _HIT_COUNTERS),
    ),
)
