"""PostgreSQL stops and comes back during an ingest: every record is stored, none twice.

The test runs its own embedded PostgreSQL (it must be free to stop it) on a fixed port, stops it after
a few batches, starts it again a moment later, and counts the records once the ingest is over.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
import pytest

from services.collector.lines import RawBatch, file_reader, read_batches
from services.collector.pipeline import ParseMode, Parser, Pipeline
from services.collector.store import Backoff, FlowWriter, WriteResult
from services.common.db import create_pool, migrate
from services.common.embedded import EmbeddedPostgres, find_free_port

pytestmark = pytest.mark.slow

RECORDS = 3000
NOW = datetime(2024, 6, 13, 1, 0, tzinfo=UTC)


def flow_log(path: Path) -> None:
    with path.open("wb") as target:
        for marker in range(RECORDS):
            record = {
                "start_time": 1718236800 + 300 * (marker % 6),
                "end_time": 1718237100 + 300 * (marker % 6),
                "source_name_aggr": f"app{marker % 40}-5d8f7c6b9a-*",
                "source_namespace": f"team{marker % 7}",
                "source_type": "wep",
                "source_labels": {"labels": [f"app=app{marker % 40}"]},
                "dest_name_aggr": "pub",
                "dest_namespace": "-",
                "dest_type": "net",
                "dest_port": 443,
                "proto": "tcp",
                "action": "allow",
                "reporter": "src",
                "bytes_in": marker,
                "policies": {"enforced_policies": [f"0|default|team{marker % 7}/default.p|allow|{marker % 3}"]},
            }
            target.write(orjson.dumps(record) + b"\n")


@pytest.mark.parametrize("mode", [ParseMode.THREAD])
async def test_a_database_restart_during_an_ingest_loses_and_repeats_nothing(mode: ParseMode) -> None:
    # A folder of its own, as the session's embedded server has (pytest's tmp_path is closed to the
    # unprivileged account the server runs as when the tests run as root).
    with tempfile.TemporaryDirectory(prefix="ringfence-restart-") as folder:
        await _restart_during_ingest(Path(folder), mode)


async def _restart_during_ingest(tmp_path: Path, mode: ParseMode) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", port=find_free_port())
    await asyncio.to_thread(server.start)
    pool: asyncpg.Pool | None = None
    try:
        connection = await asyncpg.connect(server.url)
        await migrate(connection)
        await connection.close()
        log = tmp_path / "flows.log"
        flow_log(log)

        pool = await create_pool(server.url, min_size=0, max_size=2)
        writer = FlowWriter(pool, clock=lambda: NOW, backoff=Backoff(0.05, 0.5))
        bounced = asyncio.Event()
        outage: list[asyncio.Task[None]] = []

        async def bounce() -> None:
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(1.5)
            await asyncio.to_thread(server.start)
            bounced.set()

        def stored(raw: RawBatch, result: WriteResult) -> None:
            if raw.first_line_no > 500 and not outage:
                outage.append(asyncio.get_running_loop().create_task(bounce()))

        with Parser(mode) as parser, log.open("rb") as stream:
            pipeline = Pipeline(writer, parser, clock=lambda: NOW, retention_days=30)
            batches = read_batches(file_reader(stream), "ingest:flows.log", max_lines=100, max_age=1.0, keyed=True)
            totals = await pipeline.run(batches, stored)
        await asyncio.wait_for(bounced.wait(), 30)
        assert writer.failed_attempts > 0  # the outage did hit the ingest, which waited it out

        assert (totals.accepted, totals.rejected) == (RECORDS, 0)
        markers = [row["bytes_in"] for row in await pool.fetch("SELECT bytes_in FROM flows ORDER BY bytes_in")]
        assert markers == list(range(RECORDS))
        assert await pool.fetchval("SELECT sum(records) FROM flow_edges_5m") == RECORDS
        assert await pool.fetchval("SELECT count(*) FROM ingest_batches") == RECORDS // 100
    finally:
        if pool is not None:
            await pool.close()
        await asyncio.to_thread(server.stop)
