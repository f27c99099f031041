"""The file tailer: appends, rotation, truncation and restarts, each line stored exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import flowdb
import orjson
import pytest
from flowdb import SAMPLE_TIME

from services.collector.pipeline import ParseMode, Parser, Pipeline
from services.collector.store import FlowWriter
from services.collector.tailer import FileTailer, file_id
from services.common.db.ingest import load_offset

# The shared fixtures (tests/services/flowdb.py), made visible to pytest in this module.
flow_template = flowdb.flow_template
flow_db_url = flowdb.flow_db_url
flow_pool = flowdb.flow_pool


SOURCE = "tail:test-node:flows.log"


def line(marker: int) -> bytes:
    """A flow-log line told apart from the others by its bytes_in."""
    record = {
        "start_time": 1718236800,
        "end_time": 1718237100,
        "source_name_aggr": "frontend-864f4fcdfd-*",
        "source_namespace": "storefront",
        "source_type": "wep",
        "dest_name_aggr": "pub",
        "dest_namespace": "-",
        "dest_type": "net",
        "dest_port": 443,
        "proto": "tcp",
        "action": "allow",
        "reporter": "src",
        "bytes_in": marker,
        "num_flows": 1,
    }
    return orjson.dumps(record) + b"\n"


def append(path: Path, *markers: int) -> None:
    with path.open("ab") as target:
        target.write(b"".join(line(marker) for marker in markers))


async def markers(pool: asyncpg.Pool) -> list[int]:
    return sorted(row["bytes_in"] for row in await pool.fetch("SELECT bytes_in FROM flows"))


async def wait_for(pool: asyncpg.Pool, expected: list[int], limit: float = 10.0) -> None:
    async with asyncio.timeout(limit):
        while await markers(pool) != expected:  # noqa: ASYNC110 - polls the database, nothing to wait on
            await asyncio.sleep(0.02)


def rotate_while_writing(log: Path, old_marker: int, *new_markers: int) -> None:
    """Rename the log away and start a new one; the writer adds a last line through its old handle."""
    with log.open("ab") as old_writer:  # a logger keeps its handle across the rename
        log.rename(log.with_name("flows.log.1"))
        append(log, *new_markers)
        old_writer.write(line(old_marker))


def rotate(log: Path) -> None:
    log.rename(log.with_name("flows.log.1"))


def identity_and_size(log: Path) -> tuple[str, int]:
    status = log.stat()
    return file_id(status), status.st_size


@contextlib.asynccontextmanager
async def tailing(path: Path, pool: asyncpg.Pool) -> AsyncIterator[FileTailer]:
    writer = FlowWriter(pool, clock=lambda: SAMPLE_TIME)
    pipeline = Pipeline(writer, Parser(ParseMode.INLINE), clock=lambda: SAMPLE_TIME, retention_days=30)
    tailer = FileTailer(path, pipeline, pool, source=SOURCE, batch_lines=3, batch_age=0.05, poll_interval=0.02)
    task = asyncio.create_task(tailer.run())
    try:
        yield tailer
    finally:
        tailer.stop()
        await asyncio.wait_for(task, 10)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "flows.log"


async def test_lines_appended_are_stored_including_a_line_written_in_two_parts(
    log: Path, flow_pool: asyncpg.Pool
) -> None:
    append(log, 1, 2, 3, 4)
    async with tailing(log, flow_pool):
        await wait_for(flow_pool, [1, 2, 3, 4])
        half = line(5)
        with log.open("ab") as target:
            target.write(half[:20])
            target.flush()
            await asyncio.sleep(0.2)  # the tailer sees half a line and must wait for the rest
            target.write(half[20:])
        append(log, 6)
        await wait_for(flow_pool, [1, 2, 3, 4, 5, 6])
    assert await flow_pool.fetchval("SELECT count(*) FROM flow_rejects") == 0


async def test_rotation_by_rename_finishes_the_old_file_then_reads_the_new_one(
    log: Path, flow_pool: asyncpg.Pool
) -> None:
    append(log, 1, 2)
    async with tailing(log, flow_pool):
        await wait_for(flow_pool, [1, 2])
        rotate_while_writing(log, 3, 10, 11)
        await wait_for(flow_pool, [1, 2, 3, 10, 11])
        append(log, 12)
        await wait_for(flow_pool, [1, 2, 3, 10, 11, 12])


async def test_truncation_in_place_reads_the_file_again_from_the_start(log: Path, flow_pool: asyncpg.Pool) -> None:
    append(log, 1, 2, 3)
    async with tailing(log, flow_pool):
        await wait_for(flow_pool, [1, 2, 3])
        os.truncate(log, 0)
        await asyncio.sleep(0.1)
        append(log, 7)
        await wait_for(flow_pool, [1, 2, 3, 7])


async def test_a_restart_resumes_after_the_last_stored_line(log: Path, flow_pool: asyncpg.Pool) -> None:
    append(log, 1, 2, 3, 4, 5)
    async with tailing(log, flow_pool):
        await wait_for(flow_pool, [1, 2, 3, 4, 5])
    offset = await load_offset(flow_pool, SOURCE)
    assert offset is not None
    assert (offset.file_id, offset.position, offset.line_no) == (*identity_and_size(log), 5)
    append(log, 6, 7)
    async with tailing(log, flow_pool):
        await wait_for(flow_pool, [1, 2, 3, 4, 5, 6, 7])
        await asyncio.sleep(0.2)
    assert await markers(flow_pool) == [1, 2, 3, 4, 5, 6, 7]


async def test_a_rotation_while_stopped_finishes_the_rotated_file_first(log: Path, flow_pool: asyncpg.Pool) -> None:
    append(log, 1, 2)
    async with tailing(log, flow_pool):
        await wait_for(flow_pool, [1, 2])
    append(log, 3)  # written while the collector was down, then rotated away
    rotate(log)
    append(log, 20, 21)
    async with tailing(log, flow_pool):
        await wait_for(flow_pool, [1, 2, 3, 20, 21])
        await asyncio.sleep(0.2)
    assert await markers(flow_pool) == [1, 2, 3, 20, 21]


async def test_a_file_that_does_not_exist_yet_is_waited_for(log: Path, flow_pool: asyncpg.Pool) -> None:
    async with tailing(log, flow_pool):
        await asyncio.sleep(0.1)
        append(log, 9)
        await wait_for(flow_pool, [9])
