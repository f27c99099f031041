"""SQL for ``policy_stats_5m`` and ``policy_stats_buckets``: policy statistics computed by evaluation.

The worker evaluates the stored flows of a 5-minute bucket (bucketed by start time, as the flow
store's rollups are) and writes the per-rule counts here, with the bucket's record count and the
resource generation it used. A bucket is evaluated again only when new flows arrived in it or the
resources changed since, and then only the rows whose counts changed are written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeAlias

import asyncpg

from ringfence.stats import HitCounts, HitKey
from services.common.db.flow_reads import READ_SETTINGS, widen_start

Executor: TypeAlias = asyncpg.Connection | asyncpg.Pool

BUCKET_SECONDS: Final = 300


@dataclass(frozen=True, slots=True)
class BucketState:
    """How a bucket was last evaluated: over how many records, with which resource generation."""

    records: int
    generation: int


# The flow store's graph rollup counts every stored record once per bucket: the cheapest way to see
# which buckets received flows since they were evaluated.
BUCKET_RECORDS: Final = """
SELECT bucket, sum(records)::bigint AS records
FROM flow_edges_5m
WHERE bucket >= coalesce($1::timestamptz, '-infinity') AND bucket < coalesce($2::timestamptz, 'infinity')
GROUP BY bucket
ORDER BY bucket
"""


async def bucket_records(conn: Executor, from_: datetime | None, to: datetime | None) -> dict[datetime, int]:
    """Stored records per 5-minute bucket of start time in ``[from_, to)``."""
    rows = await conn.fetch(BUCKET_RECORDS, from_, to)
    return {row["bucket"]: int(row["records"]) for row in rows}


BUCKET_STATES: Final = """
SELECT bucket, records, generation FROM policy_stats_buckets
WHERE bucket >= coalesce($1::timestamptz, '-infinity') AND bucket < coalesce($2::timestamptz, 'infinity')
"""


async def bucket_states(conn: Executor, from_: datetime | None, to: datetime | None) -> dict[datetime, BucketState]:
    """How each bucket of ``[from_, to)`` was last evaluated."""
    rows = await conn.fetch(BUCKET_STATES, from_, to)
    return {row["bucket"]: BucketState(int(row["records"]), int(row["generation"])) for row in rows}


BUCKET_COUNTS: Final = """
SELECT staged_view, tier, kind, namespace, name, rule_index, action, records, num_flows, packets, bytes
FROM policy_stats_5m WHERE bucket = $1
"""


async def bucket_counts(conn: Executor, bucket: datetime) -> dict[HitKey, HitCounts]:
    """The counts stored for one bucket."""
    rows = await conn.fetch(BUCKET_COUNTS, bucket)
    return {
        HitKey(
            row["staged_view"],
            row["tier"],
            row["kind"],
            row["namespace"],
            row["name"],
            row["rule_index"],
            row["action"],
        ): HitCounts(int(row["records"]), int(row["num_flows"]), int(row["packets"]), int(row["bytes"]))
        for row in rows
    }


UPSERT_COUNTS: Final = """
INSERT INTO policy_stats_5m AS s (
    bucket, staged_view, tier, kind, namespace, name, rule_index, action, records, num_flows, packets, bytes
)
SELECT $1::timestamptz, u.staged_view, u.tier, u.kind, u.namespace, u.name, u.rule_index, u.action,
       u.records, u.num_flows, u.packets, u.bytes
FROM unnest($2::boolean[], $3::text[], $4::text[], $5::text[], $6::text[], $7::integer[], $8::text[],
            $9::bigint[], $10::numeric[], $11::numeric[], $12::numeric[])
     AS u(staged_view, tier, kind, namespace, name, rule_index, action, records, num_flows, packets, bytes)
ON CONFLICT (bucket, staged_view, tier, kind, namespace, name, rule_index, action) DO UPDATE SET
    records = EXCLUDED.records, num_flows = EXCLUDED.num_flows, packets = EXCLUDED.packets, bytes = EXCLUDED.bytes
"""

DELETE_COUNTS: Final = """
DELETE FROM policy_stats_5m AS s
USING unnest($2::boolean[], $3::text[], $4::text[], $5::text[], $6::text[], $7::integer[], $8::text[])
      AS d(staged_view, tier, kind, namespace, name, rule_index, action)
WHERE s.bucket = $1 AND s.staged_view = d.staged_view AND s.tier = d.tier AND s.kind = d.kind
  AND s.namespace IS NOT DISTINCT FROM d.namespace AND s.name = d.name
  AND s.rule_index IS NOT DISTINCT FROM d.rule_index AND s.action = d.action
"""

SAVE_STATE: Final = """
INSERT INTO policy_stats_buckets (bucket, records, generation, evaluated_at) VALUES ($1, $2, $3, now())
ON CONFLICT (bucket) DO UPDATE SET records = EXCLUDED.records, generation = EXCLUDED.generation,
                                   evaluated_at = EXCLUDED.evaluated_at
"""


async def write_bucket(
    conn: asyncpg.Connection,
    bucket: datetime,
    upserts: Mapping[HitKey, HitCounts],
    deletes: Sequence[HitKey],
    state: BucketState,
) -> None:
    """Write the changed rows of one bucket and record how it was evaluated, in one transaction."""
    async with conn.transaction():
        if deletes:
            await conn.execute(DELETE_COUNTS, bucket, *_key_columns(deletes))
        if upserts:
            keys = list(upserts)
            counts = [upserts[key] for key in keys]
            await conn.execute(
                UPSERT_COUNTS,
                bucket,
                *_key_columns(keys),
                [c.records for c in counts],
                [c.flows for c in counts],
                [c.packets for c in counts],
                [c.bytes for c in counts],
            )
        await conn.execute(SAVE_STATE, bucket, state.records, state.generation)


def _key_columns(keys: Sequence[HitKey]) -> tuple[list[object], ...]:
    return (
        [k.staged_view for k in keys],
        [k.tier for k in keys],
        [k.kind for k in keys],
        [k.namespace for k in keys],
        [k.name for k in keys],
        [k.rule_index for k in keys],
        [k.action for k in keys],
    )


@dataclass(frozen=True, slots=True)
class EvaluatedCount:
    """Flows one policy rule allowed, denied or passed in a window, counted by evaluation."""

    key: HitKey
    counts: HitCounts


BOARD_COUNTS: Final = """
SELECT staged_view, tier, kind, namespace, name, rule_index, action, sum(records)::bigint AS records,
       sum(num_flows) AS num_flows, sum(packets) AS packets, sum(bytes) AS bytes
FROM policy_stats_5m
WHERE bucket > coalesce($1::timestamptz, '-infinity') AND bucket < coalesce($2::timestamptz, 'infinity')
GROUP BY staged_view, tier, kind, namespace, name, rule_index, action
ORDER BY tier, kind, namespace NULLS FIRST, name, staged_view, rule_index NULLS FIRST, action
"""


async def board_counts(conn: Executor, from_: datetime | None, to: datetime | None) -> list[EvaluatedCount]:
    """Per view, policy, rule and action, the evaluated counts of ``[from_, to)`` (whole 5-minute buckets).

    The policy board takes a policy's counts from the recorded traces when the flow log recorded it
    in the window, and from here otherwise.
    """
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as acquired:
            return await board_counts(acquired, from_, to)
    async with conn.transaction():
        await conn.execute(READ_SETTINGS)
        rows = await conn.fetch(BOARD_COUNTS, widen_start(from_), to)
    return [
        EvaluatedCount(
            HitKey(
                row["staged_view"],
                row["tier"],
                row["kind"],
                row["namespace"],
                row["name"],
                row["rule_index"],
                row["action"],
            ),
            HitCounts(int(row["records"]), int(row["num_flows"]), int(row["packets"]), int(row["bytes"])),
        )
        for row in rows
    ]


DELETE_BEFORE_COUNTS: Final = "DELETE FROM policy_stats_5m WHERE bucket < $1"
DELETE_BEFORE_STATES: Final = "DELETE FROM policy_stats_buckets WHERE bucket < $1"


async def delete_before(conn: asyncpg.Connection, cutoff: datetime) -> int:
    """Drop the statistics of buckets that start before ``cutoff`` (retention); return the rows deleted."""
    async with conn.transaction():
        status: str = await conn.execute(DELETE_BEFORE_COUNTS, cutoff)
        await conn.execute(DELETE_BEFORE_STATES, cutoff)
    return int(status.rsplit(" ", 1)[-1])


# One statistics run at a time across all workers: "ringstat" in ASCII, a key every worker agrees on.
LOCK_KEY: Final = int.from_bytes(b"ringstat", "big")
TRY_LOCK: Final = "SELECT pg_try_advisory_lock($1)"
UNLOCK: Final = "SELECT pg_advisory_unlock($1)"


async def try_lock(conn: asyncpg.Connection) -> bool:
    """Take the statistics lock for this session; False when another session holds it."""
    locked: bool = await conn.fetchval(TRY_LOCK, LOCK_KEY)
    return locked


async def unlock(conn: asyncpg.Connection) -> None:
    """Release the statistics lock taken by :func:`try_lock` on this session."""
    await conn.fetchval(UNLOCK, LOCK_KEY)
