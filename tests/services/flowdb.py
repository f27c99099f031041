"""Fixtures and helpers for flow-store tests that commit (writers, pipelines, tailers, HTTP).

Such tests cannot run in the rolled-back ``db`` transaction, so each gets a fresh database cloned from a
migrated template (``CREATE DATABASE ... TEMPLATE``: a file copy, much faster than migrating again).
Import the fixtures into a test module to use them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import orjson
import pytest

from services.collector.lines import LineSplitter, RawBatch
from services.collector.parse import ParsedChunk, TimeWindow, parse_lines
from services.collector.store import WriteBatch
from services.common.db import create_pool, migrate

DATA = Path(__file__).resolve().parents[1] / "data" / "flows"
SAMPLE_TIME = datetime(2024, 6, 13, 0, 30, tzinfo=UTC)
"""A clock near the sample files' records (June 2024), so retention keeps them."""


def url_for(server_url: str, database: str) -> str:
    return urlsplit(server_url)._replace(path=f"/{database}").geturl()


async def admin(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(server_url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
async def flow_template(postgres_server_url: str) -> AsyncIterator[str]:
    """A migrated database used only as a template (never connected to after migration)."""
    name = f"ringfence_flowtpl_{os.getpid()}_{secrets.token_hex(3)}"
    await admin(postgres_server_url, f'CREATE DATABASE "{name}"')
    connection = await asyncpg.connect(url_for(postgres_server_url, name))
    try:
        await migrate(connection)
    finally:
        await connection.close()
    yield name
    await admin(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def flow_db_url(postgres_server_url: str, flow_template: str) -> AsyncIterator[str]:
    """A fresh migrated database for one test, dropped afterwards."""
    name = f"ringfence_flowtest_{os.getpid()}_{secrets.token_hex(4)}"
    await admin(postgres_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{flow_template}"')
    yield url_for(postgres_server_url, name)
    await admin(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def flow_pool(flow_db_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the test's fresh database."""
    pool = await create_pool(flow_db_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


def sample_lines(name: str) -> list[bytes]:
    """The non-blank lines of a sample file in tests/data/flows."""
    return [line for line in (DATA / name).read_bytes().split(b"\n") if line.strip()]


def raw_batch(lines: Sequence[bytes], source: str = "test", key: str | None = None) -> RawBatch:
    splitter = LineSplitter()
    got, offsets, overlong = splitter.feed(b"".join(line + b"\n" for line in lines))
    return RawBatch(source, got, offsets, 1, batch_key=key, overlong=frozenset(overlong))


def parse(raw: RawBatch, *, window: TimeWindow | None = None, fmt: str | None = None) -> ParsedChunk:
    return parse_lines(
        raw.lines,
        raw.offsets,
        source=raw.source,
        first_line_no=raw.first_line_no,
        fmt=fmt,
        window=window or TimeWindow(0, 2**40),
        overlong=raw.overlong,
    )


def write_batch(raw: RawBatch, chunk: ParsedChunk | None = None) -> WriteBatch:
    chunk = chunk or parse(raw)
    return WriteBatch(raw.source, raw.batch_key, chunk, raw.lines, raw.offsets, raw.first_line_no, raw.offset)


def json_lines(records: Iterable[object]) -> list[bytes]:
    return [orjson.dumps(record) for record in records]
