"""What ``ringfence ingest`` runs: files or standard input into the database directly, or over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Self

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TimeRemainingColumn, TransferSpeedColumn

from services.collector.client import ClientSettings, IngestClient
from services.collector.lines import RawBatch, file_reader, read_batches
from services.collector.maintenance import compact_forever
from services.collector.parse import MAX_ERRORS
from services.collector.pipeline import IngestTotals, ParseMode, Parser, Pipeline, tune_gc
from services.collector.store import FlowWriter, WriteResult
from services.common.db import create_pool, rollup_hours
from services.common.settings import Settings

logger = logging.getLogger(__name__)

INGEST_COMPACT_INTERVAL = 2.0
"""Seconds between rounds of compaction during ``ringfence ingest --direct``: the hours a file has moved
past are built while the rest is read (on the second core, which the Python parse leaves partly idle),
not all at the end."""

INGEST_COMPACT_SETTLE = timedelta(seconds=2)
"""How long after a batch first marks an hour the ingest compacts it. A file in time order moves past an
hour in under a second at full speed; an hour touched again later is marked again and rebuilt again."""

HTTP_BATCH_BYTES = 4 * 1024 * 1024
"""Bytes of lines per request (well under the default 16 MiB body limit)."""


def utc_now() -> datetime:
    """The wall clock, in UTC (the one place the collector reads it)."""
    return datetime.now(UTC)


async def ingest_direct(
    settings: Settings,
    files: Sequence[Path],
    *,
    fmt: str | None,
    batch_lines: int,
    parse_mode: ParseMode,
    show: bool,
) -> IngestTotals:
    """Parse and store ``files`` (``-``: standard input) into ``settings.database_url``, batch by batch."""
    if settings.database_url is None:
        raise ValueError("no database URL")
    tune_gc()
    # Two connections write batches (the pipeline overlaps them), a third compacts finished hours.
    pool = await create_pool(settings.database_url, min_size=1, max_size=3)
    totals = IngestTotals()
    stop_compacting = asyncio.Event()
    compacting = asyncio.create_task(
        compact_forever(
            pool, clock=utc_now, stop=stop_compacting, interval=INGEST_COMPACT_INTERVAL, settle=INGEST_COMPACT_SETTLE
        )
    )
    try:
        with Parser(parse_mode) as parser, _Progress(files, show) as bar:
            writer = FlowWriter(pool, clock=utc_now)
            pipeline = Pipeline(writer, parser, clock=utc_now, fmt=fmt, retention_days=settings.retention_days)
            for path in files:
                with _open_source(path) as (source, stream):
                    batches = read_batches(
                        file_reader(stream),
                        source,
                        max_lines=batch_lines,
                        max_age=settings.ingest_batch_age_seconds,
                        keyed=True,
                    )
                    _merge(totals, await pipeline.run(batches, bar.advance))
        stop_compacting.set()
        await compacting
        # The hours just written are final as far as this run knows: build the hourly rollups of those the
        # rounds above left (the last ones) rather than leave them to a collector (hours another writer
        # holds are left to it).
        async with pool.acquire() as conn:
            await rollup_hours.compact(conn)
    finally:
        stop_compacting.set()
        await asyncio.gather(compacting, return_exceptions=True)
        await pool.close()
    return totals


async def ingest_http(
    client_settings: ClientSettings,
    files: Sequence[Path],
    *,
    batch_lines: int,
    batch_age: float,
    show: bool,
) -> IngestTotals:
    """Send ``files`` (``-``: standard input) to the collector at ``client_settings.url``, batch by batch."""
    client = IngestClient(client_settings)
    totals = IngestTotals()
    try:
        with _Progress(files, show) as bar:
            for path in files:
                with _open_source(path) as (source, stream):
                    batches = read_batches(
                        file_reader(stream),
                        source,
                        max_lines=batch_lines,
                        max_age=batch_age,
                        max_bytes=HTTP_BATCH_BYTES,
                    )
                    _merge(totals, await client.run(batches, bar.advance))
    finally:
        await client.aclose()
    return totals


@contextlib.contextmanager
def _open_source(path: Path) -> Iterator[tuple[str, BinaryIO]]:
    if str(path) == "-":
        yield "ingest:-", sys.stdin.buffer
        return
    try:
        stream = path.open("rb")
    except OSError as error:
        raise click.FileError(str(path), hint=error.strerror) from None
    with stream:
        yield f"ingest:{path.resolve()}", stream


def _merge(totals: IngestTotals, part: IngestTotals) -> None:
    totals.accepted += part.accepted
    totals.rejected += part.rejected
    totals.lines += part.lines
    totals.batches += part.batches
    totals.duplicate_batches += part.duplicate_batches
    totals.errors.extend(part.errors[: max(0, MAX_ERRORS - len(totals.errors))])


def report(totals: IngestTotals) -> None:
    for error in totals.errors:
        click.echo(f"line {error['line']}: {error['error']}", err=True)
    if totals.rejected > len(totals.errors):
        click.echo(f"... {totals.rejected - len(totals.errors)} more rejected lines in the rejects table", err=True)
    summary = f"accepted {totals.accepted}, rejected {totals.rejected}"
    if totals.duplicate_batches:
        summary += f" ({totals.duplicate_batches} batches were already stored)"
    click.echo(summary)


class _Progress:
    """A rich progress bar over the bytes of the input files (a spinner for standard input), or nothing."""

    def __init__(self, files: Sequence[Path], show: bool) -> None:
        self.show = show
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        sizes = [path.stat().st_size for path in files if str(path) != "-" and path.is_file()]
        self.total = sum(sizes) if len(sizes) == len(files) else None

    def __enter__(self) -> Self:
        if self.show:
            progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            progress.start()
            self._task = progress.add_task("ingesting", total=self.total)
            self._progress = progress
        return self

    def advance(self, raw: RawBatch, result: WriteResult) -> None:
        """Count one stored batch."""
        del result
        if self._progress is not None and self._task is not None and raw.offsets:
            self._progress.advance(self._task, raw.end_offset - raw.offsets[0])

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
