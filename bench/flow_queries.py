"""Query speed over a large flow store: the flow graph of one namespace and the policy board, over 24 h.

    .venv/bin/python bench/flow_queries.py [--rows 10000000] [--database-url URL] [--keep]

Loads ``--rows`` realistic flow records (bench/flowgen.py's cluster, one 5-minute window after the
other going back from now) through the collector's write path (FlowWriter: COPY, rollups, inventory),
skipping only JSON parsing, then times each query several times. Target: under 200 ms each.
The database is fresh and dropped afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.flowgen import WINDOW, generate
from bench.ingest import DEFAULT_SERVER, create_database, drop_database
from services.collector.parse import ParsedChunk, TimeWindow, parse_lines
from services.collector.store import FlowWriter, WriteBatch
from services.common.db import create_pool, flows, rollup_hours
from services.common.db.flows import FlowFilter

BATCH = 20_000


async def load(url: str, rows: int, end: int) -> float:
    """Store ``rows`` records: one generated window's rows, shifted back one window at a time."""
    template_lines = [line.rstrip(b"\n") for line in generate(50_000, end=end)]
    first_window = [line for line in template_lines if b'"start_time":%d' % (end - end % WINDOW - WINDOW) in line]
    offsets = [0] * len(first_window)
    window = TimeWindow(0, 2**40)
    chunk = parse_lines(first_window, offsets, source="bench", first_line_no=1, fmt="calico", window=window)
    template = chunk.encoded.rows
    rng = random.Random(3)
    pool = await create_pool(url, min_size=1, max_size=2)
    writer = FlowWriter(pool, clock=lambda: datetime.now(UTC))
    started = time.perf_counter()
    stored, shift = 0, 0
    try:
        while stored < rows:
            batch_rows = []
            while len(batch_rows) < BATCH and stored + len(batch_rows) < rows:
                for row in template:
                    if stored + len(batch_rows) >= rows:
                        break
                    flows_ = max(1, row[27] + rng.randint(-2, 2))
                    batch_rows.append((row[0] - shift, row[1] - shift, *row[2:27], flows_, *row[28:]))
                shift += WINDOW
            chunk.encoded.rows = batch_rows
            chunk.encoded.copy_data = None  # the parser's COPY tuples are of the template rows
            chunk.encoded.days = {row[0] // 86_400 for row in (batch_rows[0], batch_rows[-1])}
            # A fresh chunk per batch: a chunk caches its rollup groups, and every batch here has the same
            # row count, so a reused one would add the first batch's sums to the rollups again and again.
            batch_chunk = ParsedChunk(chunk.encoded, list(range(len(batch_rows))), [])
            await writer.write(WriteBatch("bench", None, batch_chunk, [], [], 1))
            stored += len(batch_rows)
            print(f"\r  loaded {stored:,} rows ({shift // 3600} h of history)", end="", flush=True)
        async with pool.acquire() as conn:
            # As a running collector leaves it: every hour rebuilt but the newest, still pending (the
            # queries read that one from the 5-minute rollups).
            await rollup_hours.compact(conn)
            async with conn.transaction():
                await rollup_hours.mark_hours(conn, [(end - 1) // 3600])
            await conn.execute("VACUUM ANALYZE")
    finally:
        await pool.close()
    print()
    return time.perf_counter() - started


async def time_queries(url: str, end: int, repeat: int) -> None:
    pool = await create_pool(url, min_size=1, max_size=1)
    to = datetime.fromtimestamp(end, UTC)
    since = to - timedelta(hours=24)
    try:
        async with pool.acquire() as conn:
            flows_24h = await conn.fetchval(
                "SELECT count(*) FROM flows WHERE start_time >= $1 AND start_time < $2", since, to
            )
            print(f"flows in the last 24 h: {flows_24h:,}")
            queries = {
                "flow graph, namespace team05, 24 h": lambda: flows.flow_graph(
                    conn, FlowFilter(namespace="team05", from_=since, to=to)
                ),
                "policy board, 24 h": lambda: flows.policy_board_counts(conn, since, to),
            }
            for name, query in queries.items():
                timings = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    answer = await query()
                    timings.append((time.perf_counter() - started) * 1000)
                size = len(answer.edges) if hasattr(answer, "edges") else len(answer)
                print(
                    f"{name}: first {timings[0]:.0f} ms, median {statistics.median(timings):.0f} ms, "
                    f"best {min(timings):.0f} ms ({size} results; target < 200 ms)"
                )
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--database-url", default=os.environ.get("RINGFENCE_DATABASE_URL") or DEFAULT_SERVER)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the loaded database (its name is printed)")
    args = parser.parse_args()
    end = int(time.time())
    end -= end % WINDOW
    name, url = asyncio.run(create_database(args.database_url))
    print(f"database {name}")
    try:
        elapsed = asyncio.run(load(url, args.rows, end))
        print(f"loaded {args.rows:,} rows in {elapsed:.0f} s ({args.rows / elapsed:,.0f} rows/s through FlowWriter)")
        asyncio.run(time_queries(url, end, args.repeat))
    finally:
        if not args.keep:
            asyncio.run(drop_database(args.database_url, name))


if __name__ == "__main__":
    main()
