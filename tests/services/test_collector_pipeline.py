"""The pipeline's write order against real PostgreSQL: keyed batches without a tailer offset are written
two at a time, batches with an offset one after the other; outcomes are reported in input order and a
second run stores nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import asyncpg
import flowdb
import orjson
import pytest
from flowdb import SAMPLE_TIME, raw_batch, sample_lines

from services.collector.lines import RawBatch
from services.collector.pipeline import CONCURRENT_WRITES, Parser, Pipeline
from services.collector.store import FlowWriter, WriteBatch, WriteResult
from services.common.db import rollup_hours
from services.common.db.ingest import FileOffset

flow_db_url = flowdb.flow_db_url
flow_template = flowdb.flow_template
flow_pool = flowdb.flow_pool

BATCHES = 8


class CountingWriter(FlowWriter):
    """A FlowWriter that records how many writes were in flight at once, and the order they finished."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool, clock=lambda: SAMPLE_TIME)
        self.in_flight = 0
        self.most_in_flight = 0
        self.finished: list[str] = []

    async def write(self, batch: WriteBatch, *, deadline: float | None = None) -> WriteResult:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01 * (batch.first_line_no % 3))  # uneven durations: later ones may finish first
            return await super().write(batch, deadline=deadline)
        finally:
            self.in_flight -= 1
            self.finished.append(batch.source)


def batches(*, with_offsets: bool) -> list[RawBatch]:
    template = orjson.loads(sample_lines("calico-flows.log")[0])
    made = []
    for index in range(BATCHES):
        lines = [
            orjson.dumps({**template, "start_time": 1718236800 + 300 * step, "end_time": 1718237100 + 300 * step})
            for step in range(index * 5, index * 5 + 5)
        ]
        raw = raw_batch(lines, source=f"batch-{index}")
        raw.first_line_no = index
        raw.batch_key = raw.content_key()
        if with_offsets:
            raw.offset = FileOffset("1:1", 100 * (index + 1), 5 * (index + 1))
        made.append(raw)
    return made


async def feed(raws: Sequence[RawBatch]) -> AsyncIterator[RawBatch]:
    for raw in raws:
        yield raw


async def run(pool: asyncpg.Pool, raws: Sequence[RawBatch]) -> tuple[CountingWriter, list[str], list[WriteResult]]:
    writer = CountingWriter(pool)
    reported: list[str] = []
    results: list[WriteResult] = []

    def on_stored(raw: RawBatch, result: WriteResult) -> None:
        reported.append(raw.source)
        results.append(result)

    with Parser() as parser:
        pipeline = Pipeline(writer, parser, clock=lambda: SAMPLE_TIME, depth=4)
        await pipeline.run(feed(raws), on_stored)
    return writer, reported, results


@pytest.mark.parametrize(("with_offsets", "most_at_once"), [(False, CONCURRENT_WRITES), (True, 1)])
async def test_keyed_batches_overlap_and_are_reported_in_order(
    flow_pool: asyncpg.Pool, *, with_offsets: bool, most_at_once: int
) -> None:
    raws = batches(with_offsets=with_offsets)
    writer, reported, results = await run(flow_pool, raws)
    assert writer.most_in_flight == most_at_once
    assert reported == [raw.source for raw in raws]
    assert not any(result.duplicate for result in results)
    assert await flow_pool.fetchval("SELECT count(*) FROM flows") == 5 * BATCHES
    assert await flow_pool.fetchval("SELECT sum(records) FROM flow_edges_5m") == 5 * BATCHES
    async with flow_pool.acquire() as conn:
        await rollup_hours.compact(conn)
    assert await flow_pool.fetchval("SELECT sum(records) FROM flow_edges_1h") == 5 * BATCHES
    # A second run of the same batches finds every one stored and adds nothing.
    _, reported_again, results_again = await run(flow_pool, raws)
    assert reported_again == reported
    assert all(result.duplicate for result in results_again)
    assert await flow_pool.fetchval("SELECT count(*) FROM flows") == 5 * BATCHES
    if with_offsets:
        stored = await flow_pool.fetch("SELECT source, position FROM ingest_offsets ORDER BY source")
        assert [tuple(row) for row in stored] == [(raw.source, raw.offset.position) for raw in raws if raw.offset]


async def test_a_failed_batch_stops_the_run_and_leaves_no_half_batch(flow_pool: asyncpg.Pool) -> None:
    raws = batches(with_offsets=False)
    writer = CountingWriter(flow_pool)

    async def failing_write(batch: WriteBatch, *, deadline: float | None = None) -> WriteResult:
        if batch.source == "batch-3":
            raise RuntimeError("boom")
        return await CountingWriter.write(writer, batch, deadline=deadline)

    writer.write = failing_write  # type: ignore[method-assign]
    reported: list[str] = []
    with Parser() as parser:
        pipeline = Pipeline(writer, parser, clock=lambda: SAMPLE_TIME, depth=4)
        with pytest.raises(RuntimeError, match="boom"):
            await pipeline.run(feed(raws), lambda raw, _result: reported.append(raw.source))
    assert reported == ["batch-0", "batch-1", "batch-2"]
    # Whole batches only (each covers its own 25 minutes): batch-3 not at all, the earlier ones fully, and
    # the one in flight when it failed either fully or not at all.
    rows = await flow_pool.fetch(
        "SELECT (extract(epoch FROM start_time)::bigint - 1718236800) / 1500 AS batch, count(*) FROM flows GROUP BY 1"
    )
    per_batch = {row["batch"]: row["count"] for row in rows}
    assert set(per_batch) in ({0, 1, 2}, {0, 1, 2, 4})
    assert set(per_batch.values()) == {5}
    assert await flow_pool.fetchval("SELECT count(*) FROM ingest_batches") == len(per_batch)


async def test_a_failed_write_ends_the_run_while_the_parser_waits_on_a_full_queue(flow_pool: asyncpg.Pool) -> None:
    # The parser runs ahead of the writer: with a queue of one, it holds a third batch it cannot hand over when
    # the first write fails. The run must end with the write's error, not wait for ever on a queue that
    # nobody reads any more (it did: the cancelled parser tried to put its own notice on the full queue).
    raws = batches(with_offsets=True)
    writer = CountingWriter(flow_pool)
    parsed: list[str] = []
    third_read = asyncio.Event()

    async def failing_write(batch: WriteBatch, *, deadline: float | None = None) -> WriteResult:
        await third_read.wait()  # the parser holds batch-2, with batch-1 on the full queue
        raise RuntimeError("boom")

    async def feed_counting(raws: Sequence[RawBatch]) -> AsyncIterator[RawBatch]:
        for raw in raws:
            parsed.append(raw.source)
            if len(parsed) == 3:
                third_read.set()
            yield raw

    writer.write = failing_write  # type: ignore[method-assign]
    with Parser() as parser:
        pipeline = Pipeline(writer, parser, clock=lambda: SAMPLE_TIME, depth=1)
        with pytest.raises(RuntimeError, match="boom"):
            await asyncio.wait_for(pipeline.run(feed_counting(raws)), timeout=30)
    assert parsed == ["batch-0", "batch-1", "batch-2"]
    assert await flow_pool.fetchval("SELECT count(*) FROM flows") == 0
