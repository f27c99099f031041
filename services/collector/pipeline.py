"""Batches in, stored flows out: parse batch n+1 while batch n is written.

Parsing is CPU work in Python; writing is mostly PostgreSQL's work in its own process. A bounded
queue between the two lets them overlap and applies backpressure: when the database is slow or away
the queue fills, the parser stops asking for batches and the source stops reading (the tailer
pauses; memory stays bounded by ``depth`` batches and the writes in flight).

Keyed batches without a tailer offset (``ringfence ingest``) are written two at a time on two
connections, so PostgreSQL works on one batch while the next is sent: ``bench/ingest.py --lines
500000`` went from 33,200 to 36,600-38,300 rows/s (peak RSS 99 -> 128 MiB), measured when the rollups
were still upserted per batch. The tailer's batches, which save their offset, stay one at a time.

Where the parser runs is a :class:`ParseMode`, measured on the 2-core target with ``bench/ingest.py``
(200,000 lines, ``ringfence ingest --direct``, same machine and load): a thread 37,500 rows/s, inline
on the event loop in 256-line slices 35,300 rows/s (22,500 unsliced: the writer's next statement waited
for a whole batch's parse), a worker process 19,700-33,000 rows/s (pickling 1.6 KB lines there and
rows back costs ~6 us a row, and three busy processes share two cores). The thread wins: the GIL is
released while asyncpg waits on the socket and while PostgreSQL works, which is where the overlap is.
Re-measured with the msgspec fast path and binary COPY tuples (1,000,000 lines): thread 63,000 rows/s,
process 45,000 rows/s (the process spends 20 us of CPU a row against 14 for the thread). Sending the
worker's results without the rows (COPY tuples, sums and sightings only) did not close the gap.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import Any, Final, Self

from services.collector.lines import RawBatch
from services.collector.parse import MAX_ERRORS, ParsedChunk, TimeWindow, parse_lines
from services.collector.store import FlowWriter, WriteBatch, WriteResult


class ParseMode(StrEnum):
    """Where batches are parsed: on the event loop, in a thread, or in a worker process."""

    INLINE = "inline"
    THREAD = "thread"
    PROCESS = "process"


DEFAULT_PARSE_MODE: Final = ParseMode.THREAD

GC_THRESHOLD: Final = (100_000, 50, 1000)
"""Collections less often than CPython's (700, 10, 10): parsing allocates a decoded record and a row
per line, and the default first-generation threshold ran a collection every few dozen lines (about 10%
of the parse time on ``bench/ingest.py``). Nothing here builds reference cycles worth collecting early."""


def tune_gc() -> None:
    """Set :data:`GC_THRESHOLD` for this process (the collector's and ``ringfence ingest``'s entry points)."""
    gc.set_threshold(*GC_THRESHOLD)


FUTURE_SLACK: Final = 86_400
"""Seconds a record may end after the collector's clock (clock skew between nodes)."""


def time_window(now: datetime, retention_days: int | None) -> TimeWindow:
    """The times a record may carry, at ``now``, with ``retention_days`` of history kept."""
    seconds = int(now.timestamp())
    earliest = 0 if retention_days is None else seconds - retention_days * 86_400
    return TimeWindow(earliest, seconds + FUTURE_SLACK)


INLINE_SLICE: Final = 256

CONCURRENT_WRITES: Final = 2
"""Keyed batches without a tailer offset written at once (each on its own pooled connection)."""


def _merge_chunks(into: ParsedChunk, part: ParsedChunk, start: int) -> ParsedChunk:
    into.encoded.rows.extend(part.encoded.rows)
    if into.encoded.copy_data is not None and part.encoded.copy_data is not None:
        into.encoded.copy_data.extend(part.encoded.copy_data)
    else:
        into.encoded.copy_data = None
    into.encoded.label_sets.update(part.encoded.label_sets)
    into.encoded.trace_sets.update(part.encoded.trace_sets)
    into.encoded.days |= part.encoded.days
    into.row_lines.extend(index + start for index in part.row_lines)
    into.rejects.extend(part.rejects)
    into.errors.extend(part.errors[: max(0, MAX_ERRORS - len(into.errors))])
    return into


class Parser:
    """Runs :func:`parse_lines` where ``mode`` says; close it to stop its worker."""

    def __init__(self, mode: ParseMode = DEFAULT_PARSE_MODE) -> None:
        self.mode = mode
        self._executor: Executor | None = None
        if mode is ParseMode.THREAD:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="ringfence-parse")
        elif mode is ParseMode.PROCESS:
            # spawn: forking a process that runs an event loop and threads is unsafe.
            self._executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))

    async def parse(self, raw: RawBatch, fmt: str | None, window: TimeWindow) -> ParsedChunk:
        """Parse one raw batch."""
        job = partial(
            parse_lines,
            raw.lines,
            raw.offsets,
            source=raw.source,
            first_line_no=raw.first_line_no,
            fmt=fmt,
            window=window,
            overlong=raw.overlong,
        )
        if self._executor is not None:
            return await asyncio.get_running_loop().run_in_executor(self._executor, job)
        # Inline: parse in slices, letting the event loop send the writer's next statement between them.
        merged: ParsedChunk | None = None
        for start in range(0, max(1, len(raw.lines)), INLINE_SLICE):
            part = parse_lines(
                raw.lines[start : start + INLINE_SLICE],
                raw.offsets[start : start + INLINE_SLICE],
                source=raw.source,
                first_line_no=raw.first_line_no + start,
                fmt=fmt,
                window=window,
                overlong=frozenset(index - start for index in raw.overlong if start <= index < start + INLINE_SLICE),
            )
            merged = part if merged is None else _merge_chunks(merged, part, start)
            await asyncio.sleep(0)
        assert merged is not None
        return merged

    def close(self) -> None:
        """Stop the worker thread or process."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(slots=True)
class IngestTotals:
    """What a run stored: counts, batches found already stored, and the first errors by line."""

    accepted: int = 0
    rejected: int = 0
    lines: int = 0
    batches: int = 0
    duplicate_batches: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, raw: RawBatch, result: WriteResult) -> None:
        """Count one stored batch."""
        self.batches += 1
        self.lines += len(raw.lines)
        self.accepted += result.outcome.accepted
        self.rejected += result.outcome.rejected
        self.duplicate_batches += result.duplicate
        room = MAX_ERRORS - len(self.errors)
        if room > 0:
            self.errors.extend(result.outcome.errors[:room])


StoredCallback = Callable[[RawBatch, WriteResult], None]

CommitHook = Callable[[ParsedChunk, WriteResult], Awaitable[None]]
"""Called after each batch commits (not for batches found already stored), e.g. to publish its flows."""


@dataclass(slots=True)
class _Done:
    error: BaseException | None = None


class Pipeline:
    """Parses and stores batches, the next parse overlapping the current writes; outcomes in input order."""

    def __init__(
        self,
        writer: FlowWriter,
        parser: Parser,
        *,
        clock: Callable[[], datetime],
        fmt: str | None = None,
        retention_days: int | None = None,
        depth: int = 2,
        on_commit: CommitHook | None = None,
    ) -> None:
        self.writer = writer
        self.parser = parser
        self.clock = clock
        self.fmt = fmt
        self.retention_days = retention_days
        self.depth = depth
        self.on_commit = on_commit

    async def parse(self, raw: RawBatch, *, fmt: str | None = None) -> ParsedChunk:
        """Parse one batch in ``fmt`` (default: the pipeline's) with the current time window."""
        return await self.parser.parse(raw, fmt or self.fmt, time_window(self.clock(), self.retention_days))

    async def store(self, raw: RawBatch, chunk: ParsedChunk, *, deadline: float | None = None) -> WriteResult:
        """Store one parsed batch (retrying until ``deadline``, for ever when None)."""
        result = await self._write(raw, chunk, deadline=deadline)
        await self._committed(chunk, result)
        return result

    async def _write(self, raw: RawBatch, chunk: ParsedChunk, *, deadline: float | None = None) -> WriteResult:
        batch = WriteBatch(
            raw.source, raw.batch_key, chunk, raw.lines, raw.offsets, raw.first_line_no, offset=raw.offset
        )
        return await self.writer.write(batch, deadline=deadline)

    async def _committed(self, chunk: ParsedChunk, result: WriteResult) -> None:
        if self.on_commit is not None and not result.duplicate:
            await self.on_commit(chunk, result)

    async def run(self, batches: AsyncIterable[RawBatch], on_stored: StoredCallback | None = None) -> IngestTotals:
        """Parse and store every batch of ``batches``; return the totals.

        Batches that carry an idempotency key and no tailer offset (``ringfence ingest``) are written up
        to :data:`CONCURRENT_WRITES` at once, each in its own transaction on its own connection, so one
        batch's COPY overlaps the previous batch's other statements. Their outcomes (totals, ``on_stored``,
        ``on_commit``) are still reported in order, and a batch with a tailer offset waits for every
        earlier batch: offsets are saved in order. A failed run may leave a later keyed batch stored
        and an earlier one not; running it again stores the earlier one and finds the later one stored.
        """
        totals = IngestTotals()
        queue: asyncio.Queue[tuple[RawBatch, ParsedChunk] | _Done] = asyncio.Queue(maxsize=self.depth)
        writing: deque[tuple[RawBatch, ParsedChunk, asyncio.Task[WriteResult]]] = deque()

        async def produce() -> None:
            loop = asyncio.get_running_loop()
            try:
                async for raw in batches:
                    if raw.key_by_content and raw.batch_key is None:
                        key = loop.run_in_executor(None, raw.content_key)  # beside the parse, GIL released
                        chunk = await self.parse(raw)
                        raw.batch_key = await key
                    else:
                        chunk = await self.parse(raw)
                    await queue.put((raw, chunk))
            except asyncio.CancelledError:
                # The consumer stopped (and cancelled us): nobody reads the queue any more, so a put on a
                # full queue would wait for ever.
                raise
            except BaseException as error:  # handed to the consumer, which re-raises it
                await queue.put(_Done(error))
                raise
            await queue.put(_Done())

        async def finish_oldest() -> None:
            raw, chunk, task = writing.popleft()
            result = await task
            await self._committed(chunk, result)
            totals.add(raw, result)
            if on_stored is not None:
                on_stored(raw, result)

        producer = asyncio.create_task(produce())
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _Done):
                    if item.error is not None and not isinstance(item.error, asyncio.CancelledError):
                        raise item.error
                    break
                raw, chunk = item
                overlapping = raw.offset is None and raw.batch_key is not None
                while writing and (not overlapping or len(writing) >= CONCURRENT_WRITES):
                    await finish_oldest()
                writing.append((raw, chunk, asyncio.create_task(self._write(raw, chunk))))
                if not overlapping:
                    await finish_oldest()
            while writing:
                await finish_oldest()
        finally:
            for _, _, task in writing:
                task.cancel()
            await asyncio.gather(*(task for _, _, task in writing), return_exceptions=True)
            if not producer.done():
                producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
        return totals
