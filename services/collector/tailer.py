"""Follow a flow-log file (Calico's ``flows.log``) across rotation and truncation, resuming where it stopped.

The position reached is saved in ``ingest_offsets`` in the transaction of the batch that reached it,
so after a restart the tailer continues exactly after the last stored line: nothing lost, nothing
stored twice. A file is known by its device and inode: when the path names another file (rotation by
rename), the old file is read to its end first; when the file shrinks below the position (truncation
in place), reading starts again at its beginning. Each batch is also named by its file and offset
range for the idempotency table, so a batch retried after a lost commit answer is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import asyncpg

from services.collector.lines import Batcher, LineSplitter, RawBatch
from services.collector.pipeline import IngestTotals, Pipeline
from services.collector.store import TRANSIENT_ERRORS, Backoff, WriteResult
from services.common.db.ingest import FileOffset, load_offset

logger = logging.getLogger(__name__)

READ_SIZE: Final = 1024 * 1024


def file_id(status: os.stat_result) -> str:
    """The identity of a file that survives renames: ``device:inode``."""
    return f"{status.st_dev}:{status.st_ino}"


@dataclass(slots=True)
class _OpenFile:
    handle: BinaryIO
    id: str
    path: Path
    splitter: LineSplitter
    batcher: Batcher


class FileTailer:
    """Streams one file's lines into a :class:`Pipeline` until :meth:`stop` is called."""

    def __init__(
        self,
        path: Path,
        pipeline: Pipeline,
        pool: asyncpg.Pool,
        *,
        source: str,
        batch_lines: int,
        batch_age: float,
        poll_interval: float = 0.25,
    ) -> None:
        self.path = path
        self.pipeline = pipeline
        self.pool = pool
        self.source = source
        self.batch_lines = batch_lines
        self.batch_age = batch_age
        self.poll_interval = poll_interval
        self.totals = IngestTotals()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Finish the batch in hand and return from :meth:`run` (the unfinished last line waits for next time)."""
        self._stopping.set()

    async def run(self) -> IngestTotals:
        """Tail until stopped; return what was stored."""
        return await self.pipeline.run(self._batches(), self._stored)

    def _stored(self, raw: RawBatch, result: WriteResult) -> None:
        self.totals.add(raw, result)

    async def _batches(self) -> AsyncIterator[RawBatch]:
        stored = await self._load_offset()
        current = await self._open_current()
        if current is None:
            return
        if stored is not None and stored.file_id != current.id:
            # Rotated while we were away: finish the file we were reading if it is still around.
            previous = _find_by_id(self.path.parent, stored.file_id)
            if previous is not None:
                old = self._open(previous, stored)
                if old is not None:
                    async for batch in self._drain(old):
                        yield batch
                    old.handle.close()
            stored = None
        if stored is not None and stored.file_id == current.id:
            self._seek(current, stored)
        while not self._stopping.is_set():
            async for batch in self._follow(current):
                yield batch
            if self._stopping.is_set():
                break
            # _follow returns when the path names another file: finish this one, then switch.
            async for batch in self._drain(current):
                yield batch
            current.handle.close()
            replacement = await self._open_current()
            if replacement is None:
                return
            current = replacement
        with contextlib.suppress(OSError):
            current.handle.close()

    async def _follow(self, current: _OpenFile) -> AsyncIterator[RawBatch]:
        """Read ``current`` as it grows; return when the path names another file (or on stop)."""
        while not self._stopping.is_set():
            data = current.handle.read(READ_SIZE)
            if data:
                for batch in current.batcher.add(*current.splitter.feed(data)):
                    yield self._named(current, batch)
                continue
            if current.batcher.started is not None and current.batcher.started + self.batch_age <= _now():
                last = current.batcher.flush()
                if last is not None:
                    yield self._named(current, last)
            size = os.fstat(current.handle.fileno()).st_size
            if size < current.splitter.line_start + current.splitter.pending:
                logger.info("%s was truncated; reading it again from the start", current.path)
                last = current.batcher.flush()
                if last is not None:
                    yield self._named(current, last)
                self._seek(current, FileOffset(current.id, 0, 0))
                continue
            try:
                named = file_id(self.path.stat())
            except FileNotFoundError:
                named = None
            if named is not None and named != current.id:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.poll_interval)
        last = current.batcher.flush()
        if last is not None:
            yield self._named(current, last)

    async def _drain(self, old: _OpenFile) -> AsyncIterator[RawBatch]:
        """Read a file that no longer grows to its end, its last line even without a newline."""
        while data := old.handle.read(READ_SIZE):
            for batch in old.batcher.add(*old.splitter.feed(data)):
                yield self._named(old, batch)
        lines, offsets = old.splitter.finish()
        for batch in old.batcher.add(lines, offsets, set()):
            yield self._named(old, batch)
        last = old.batcher.flush()
        if last is not None:
            yield self._named(old, last)

    def _named(self, current: _OpenFile, batch: RawBatch) -> RawBatch:
        end = batch.end_offset
        last_line = batch.first_line_no + len(batch.lines) - 1
        batch.offset = FileOffset(current.id, end, last_line)
        batch.batch_key = f"{current.id}:{batch.content_key()}"
        return batch

    def _seek(self, current: _OpenFile, offset: FileOffset) -> None:
        size = os.fstat(current.handle.fileno()).st_size
        position, line_no = (offset.position, offset.line_no) if offset.position <= size else (0, 0)
        current.handle.seek(position)
        current.splitter = LineSplitter(line_start=position)
        current.batcher = Batcher(self.source, self.batch_lines, next_line_no=line_no + 1)

    def _open(self, path: Path, offset: FileOffset | None = None) -> _OpenFile | None:
        try:
            handle = path.open("rb", buffering=0)
        except FileNotFoundError:
            return None
        opened = _OpenFile(
            handle,
            file_id(os.fstat(handle.fileno())),
            path,
            LineSplitter(),
            Batcher(self.source, self.batch_lines),
        )
        if offset is not None:
            self._seek(opened, offset)
        return opened

    async def _open_current(self) -> _OpenFile | None:
        while not self._stopping.is_set():
            opened = self._open(self.path)
            if opened is not None:
                return opened
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.poll_interval)
        return None

    async def _load_offset(self) -> FileOffset | None:
        backoff = Backoff()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await load_offset(self.pool, self.source)
            except TRANSIENT_ERRORS as error:
                delay = backoff.delay(attempt)
                logger.warning("reading the offset of %s failed (%s); retry in %.1fs", self.source, error, delay)
                await asyncio.sleep(delay)


def _find_by_id(folder: Path, wanted: str) -> Path | None:
    """The file of ``folder`` with identity ``wanted`` (a rotated log keeps its inode)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return None
    for entry in entries:
        with contextlib.suppress(OSError):
            if entry.is_file() and file_id(entry.stat()) == wanted:
                return Path(entry.path)
    return None


def _now() -> float:
    return time.monotonic()
