"""The collector's timers against a real PostgreSQL: partitions and retention, hourly-rollup compaction."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import flowdb
from flowdb import SAMPLE_TIME, raw_batch, sample_lines

from services.collector.maintenance import compact_forever, maintain_once
from services.collector.parse import TimeWindow, parse_lines
from services.collector.store import FlowWriter, WriteBatch
from services.common.db import flows

flow_db_url = flowdb.flow_db_url
flow_template = flowdb.flow_template
flow_pool = flowdb.flow_pool


async def _store_sample(pool: asyncpg.Pool) -> None:
    raw = raw_batch(sample_lines("calico-flows.log"))
    chunk = parse_lines(
        raw.lines, raw.offsets, source=raw.source, first_line_no=1, fmt=None, window=TimeWindow(0, 2**40)
    )
    writer = FlowWriter(pool, clock=lambda: SAMPLE_TIME)
    await writer.write(WriteBatch(raw.source, None, chunk, raw.lines, raw.offsets, 1))


async def test_compaction_waits_for_an_hour_to_settle_then_builds_it(flow_pool: asyncpg.Pool) -> None:
    await _store_sample(flow_pool)
    marked = await flow_pool.fetchval("SELECT max(marked_at) FROM rollup_hours_pending")
    assert marked is not None
    assert await flow_pool.fetchval("SELECT count(*) FROM flow_edges_1h") == 0
    now = marked
    stop = asyncio.Event()
    task = asyncio.create_task(
        compact_forever(flow_pool, clock=lambda: now, stop=stop, interval=0.05, settle=timedelta(seconds=60))
    )
    try:
        await asyncio.sleep(0.3)  # several rounds: the marks are younger than the settle time
        assert await flow_pool.fetchval("SELECT count(*) FROM rollup_hours_pending") > 0
        now = marked + timedelta(seconds=61)
        for _ in range(100):
            if await flow_pool.fetchval("SELECT count(*) FROM rollup_hours_pending") == 0:
                break
            await asyncio.sleep(0.05)
        assert await flow_pool.fetchval("SELECT count(*) FROM rollup_hours_pending") == 0
    finally:
        stop.set()
        await task
    hourly = await flow_pool.fetchval("SELECT sum(records) FROM flow_edges_1h")
    assert hourly == await flow_pool.fetchval("SELECT count(*) FROM flows") > 0


async def test_maintenance_creates_partitions_ahead_and_drops_expired_ones(flow_pool: asyncpg.Pool) -> None:
    now = datetime(2031, 3, 10, 12, tzinfo=UTC)
    async with flow_pool.acquire() as conn:
        await flows.ensure_partitions(conn, (now - timedelta(days=20)).date(), (now - timedelta(days=20)).date())
        report = await maintain_once(conn, now, retention_days=7)
    assert report.partitions_created == 4 * 5  # yesterday, today and two days ahead, five tables each
    assert sorted(report.partitions_dropped) == [
        f"{table}_p20310218"
        for table in ("flow_edges_1h", "flow_edges_5m", "flows", "policy_hits_1h", "policy_hits_5m")
    ]
