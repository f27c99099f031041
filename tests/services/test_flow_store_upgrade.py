"""A flow store written before migration 0005 (upserted rollups) keeps its answers after the upgrade."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta

import orjson
from flowdb import raw_batch

from services.collector.parse import TimeWindow, parse_lines
from services.collector.store import FlowWriter, WriteBatch
from services.common.db import create_pool, load_migrations, migrate, rollup_hours
from services.common.db.flows import FlowFilter, flow_graph, policy_board_counts

HOUR = datetime(2024, 6, 13, 10, tzinfo=UTC)

# What the upserts of 0002/0004 left: one row per key and bucket, numeric sums, the hour built.
OLD_ROLLUPS = """
INSERT INTO flow_edges_5m (bucket, src_namespace, src_name_aggr, src_type, dst_namespace, dst_name_aggr, dst_type,
                           dst_port, proto, action, reporter, records, num_flows, packets_in, packets_out, bytes_in,
                           bytes_out)
VALUES ($1, 'shop', 'web-*', 'wep', 'shop', 'db-*', 'wep', 5432, 'tcp', 'allow', 'src', 4, 40, 1, 2, 3, 4),
       ($1 + interval '5 minutes', 'shop', 'web-*', 'wep', 'shop', 'db-*', 'wep', 5432, 'tcp', 'allow', 'src',
        2, 20, 1, 2, 3, 4);
INSERT INTO flow_edges_1h (bucket, src_namespace, src_name_aggr, src_type, dst_namespace, dst_name_aggr, dst_type,
                           dst_port, proto, action, reporter, records, num_flows, packets_in, packets_out, bytes_in,
                           bytes_out)
VALUES ($1, 'shop', 'web-*', 'wep', 'shop', 'db-*', 'wep', 5432, 'tcp', 'allow', 'src', 6, 60, 2, 4, 6, 8);
INSERT INTO policy_hits_5m (bucket, pending, tier, kind, namespace, name, rule_index, action, records, num_flows,
                            packets, bytes)
VALUES ($1, false, 'default', 'np', 'shop', 'default.db', 0, 'allow', 6, 60, 6, 14);
INSERT INTO policy_hits_1h (bucket, pending, tier, kind, namespace, name, rule_index, action, records, num_flows,
                            packets, bytes)
VALUES ($1, false, 'default', 'np', 'shop', 'default.db', 0, 'allow', 6, 60, 6, 14);
"""


def _record(start: int) -> bytes:
    return orjson.dumps(
        {
            "start_time": start,
            "end_time": start + 300,
            "source_type": "wep",
            "source_namespace": "shop",
            "source_name_aggr": "web-*",
            "dest_type": "wep",
            "dest_namespace": "shop",
            "dest_name_aggr": "db-*",
            "dest_port": 5432,
            "proto": "tcp",
            "action": "allow",
            "reporter": "src",
            "num_flows": 5,
            "policies": {"all_policies": ["0|default|shop/default.db|allow|0"]},
        }
    )


async def test_rollups_of_an_older_store_still_count_after_the_upgrade(
    database_factory: Callable[[], Awaitable[str]],
) -> None:
    pool = await create_pool(await database_factory(), min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            migrations = load_migrations()
            assert migrations[4].version == 5
            await migrate(conn, migrations[:4])
            await conn.execute("SELECT ensure_flow_partitions($1::date, $1::date)", date(2024, 6, 13))
            # asyncpg runs a multi-statement string only without arguments: the hour is spelled out.
            await conn.execute(OLD_ROLLUPS.replace("$1", f"TIMESTAMPTZ '{HOUR.isoformat()}'"))
            await migrate(conn)

            window = FlowFilter(namespace="shop", from_=HOUR - timedelta(hours=1), to=HOUR + timedelta(hours=2))
            (edge,) = (await flow_graph(conn, window)).edges
            assert edge.num_flows == 60  # from the hourly rollup: nothing is pending after the upgrade
            assert await conn.fetchval("SELECT count(*) FROM rollup_hours_pending") == 0

            # A new batch for the same hour and key is appended; the hour is read from the 5-minute rows
            # until compaction rebuilds it from the old rows and the new one.
            raw = raw_batch([_record(int(HOUR.timestamp()) + 300)])
            window_all = TimeWindow(0, 2**40)
            chunk = parse_lines(raw.lines, raw.offsets, source="t", first_line_no=1, fmt=None, window=window_all)
            writer = FlowWriter(pool, clock=lambda: HOUR)
            await writer.write_on(conn, WriteBatch(raw.source, None, chunk, raw.lines, raw.offsets, 1))
            (edge,) = (await flow_graph(conn, window)).edges
            assert edge.num_flows == 65
            (hits,) = await policy_board_counts(conn, window.from_, window.to)
            assert (hits.namespace, hits.name, hits.flows) == ("shop", "default.db", 65)

            assert (await rollup_hours.compact(conn)).compacted == 1
            # Three rows where two would do: too few partial rows to be worth a merge (MERGE_RATIO).
            assert await conn.fetchval("SELECT count(*) FROM flow_edges_5m") == 3
            assert await conn.fetchval("SELECT num_flows FROM flow_edges_1h") == 65
            (edge,) = (await flow_graph(conn, window)).edges
            assert edge.num_flows == 65
            (hits,) = await policy_board_counts(conn, window.from_, window.to)
            assert hits.flows == 65
    finally:
        await pool.close()
