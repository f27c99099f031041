"""Bytes -> numbered lines -> batches bounded by size and age: what every source feeds the pipeline.

A line longer than :data:`MAX_LINE` is not buffered: its first bytes are kept (for the reject) and the
rest skipped up to the next newline, so one runaway line cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import BinaryIO, Final

from services.common.db.ingest import FileOffset
from services.common.db.rejects import RAW_LIMIT

MAX_LINE: Final = 1024 * 1024
"""The longest line taken (1 MiB); longer lines are rejected."""


@dataclass(slots=True)
class RawBatch:
    """Consecutive lines of one source, numbered, with their byte offsets."""

    source: str
    lines: list[bytes]
    offsets: list[int]
    first_line_no: int
    batch_key: str | None = None
    offset: FileOffset | None = None  # the tailer position to save with the batch
    overlong: frozenset[int] = frozenset()
    key_by_content: bool = False
    """Whether the batch is to be keyed by :meth:`content_key` (left to the pipeline, which computes it in a
    thread while the batch is parsed: hashing releases the GIL)."""

    @property
    def end_offset(self) -> int:
        """The offset just after the last line (and its newline)."""
        if not self.lines:
            return self.offsets[0] if self.offsets else 0
        return self.offsets[-1] + len(self.lines[-1]) + 1

    def content_key(self) -> str:
        """A key naming this batch by its position and content (the same lines re-sent get the same key)."""
        # The lines each followed by a newline, hashed in one call (which releases the GIL).
        digest = hashlib.sha256(b"\n".join(self.lines))
        if self.lines:
            digest.update(b"\n")
        start = self.offsets[0] if self.offsets else 0
        return f"{start}-{self.end_offset}:{digest.hexdigest()[:32]}"


@dataclass(slots=True)
class LineSplitter:
    """Cuts a byte stream into lines, tracking each line's offset and cutting overlong ones.

    ``line_start`` is the offset of the first byte not yet returned as part of a line: where a reader
    resumes after a restart.
    """

    line_start: int = 0
    max_line: int = MAX_LINE
    _consumed: int = -1  # offset of the next byte fed; -1: start at line_start
    _partial: list[bytes] = field(default_factory=list)
    _partial_size: int = 0
    _skipping: bool = False  # inside an overlong line (already returned), dropping bytes up to its newline

    def feed(self, data: bytes) -> tuple[list[bytes], list[int], set[int]]:
        """Lines completed by ``data``, their offsets, and the indexes of overlong (cut) ones."""
        if self._consumed < 0:
            self._consumed = self.line_start
        if not self._skipping:
            split = self._split(data)
            if split is not None:
                return split
        base = self._consumed
        self._consumed += len(data)
        lines: list[bytes] = []
        offsets: list[int] = []
        overlong: set[int] = set()
        start = 0
        find = data.find
        while (newline := find(b"\n", start)) >= 0:
            if self._skipping:
                self._skipping = False
            else:
                piece = data[start:newline]
                if self._partial:
                    self._partial.append(piece)
                    piece = b"".join(self._partial)
                    self._partial, self._partial_size = [], 0
                if len(piece) > self.max_line:
                    overlong.add(len(lines))
                    piece = piece[: RAW_LIMIT * 4]
                lines.append(piece)
                offsets.append(self.line_start)
            self.line_start = base + newline + 1
            start = newline + 1
        if start < len(data) and not self._skipping:
            self._partial.append(data[start:])
            self._partial_size += len(data) - start
            if self._partial_size > self.max_line:
                # Give the line up now: keep its head for the reject and drop the rest as it comes.
                overlong.add(len(lines))
                lines.append(b"".join(self._partial)[: RAW_LIMIT * 4])
                offsets.append(self.line_start)
                self._partial, self._partial_size = [], 0
                self._skipping = True
        return lines, offsets, overlong

    def _split(self, data: bytes) -> tuple[list[bytes], list[int], set[int]] | None:
        """The common case in C-level passes (``bytes.split``): no line in ``data`` is overlong; None otherwise."""
        lines = data.split(b"\n")
        rest = lines.pop()  # after the last newline: the start of a line not finished yet
        if not lines or len(rest) > self.max_line:
            return None  # no newline (the partial line grows), or an overlong line already begun
        if self._partial:  # the line begun in an earlier chunk ends here
            lines[0] = b"".join((*self._partial, lines[0]))
        if max(map(len, lines)) > self.max_line:
            return None
        offsets = list(accumulate([len(line) + 1 for line in lines[:-1]], initial=self.line_start))
        self._consumed += len(data)
        self.line_start = self._consumed - len(rest)
        self._partial = [rest] if rest else []
        self._partial_size = len(rest)
        return lines, offsets, set()

    def finish(self) -> tuple[list[bytes], list[int]]:
        """The last line when the stream ends without a newline (nothing if it ended with one)."""
        skipping, self._skipping = self._skipping, False
        if skipping or not self._partial:
            self._partial, self._partial_size = [], 0
            if self._consumed >= 0:
                self.line_start = self._consumed
            return [], []
        piece = b"".join(self._partial)
        self._partial, self._partial_size = [], 0
        offset = self.line_start
        self.line_start = self._consumed
        return [piece], [offset]

    @property
    def pending(self) -> int:
        """Bytes held for a line not finished yet."""
        return self._partial_size


@dataclass(slots=True)
class Batcher:
    """Gathers numbered lines into batches of at most ``max_lines`` lines or ``max_bytes`` bytes."""

    source: str
    max_lines: int
    max_bytes: int = 32 * 1024 * 1024
    next_line_no: int = 1
    started: float | None = None  # monotonic time the open batch got its first line
    _lines: list[bytes] = field(default_factory=list)
    _offsets: list[int] = field(default_factory=list)
    _overlong: set[int] = field(default_factory=set)
    _bytes: int = 0

    def add(
        self, lines: list[bytes], offsets: list[int], overlong: set[int], now: float | None = None
    ) -> list[RawBatch]:
        """Take lines (in order); return the batches they filled."""
        full: list[RawBatch] = []
        if lines and self.started is None:
            self.started = time.monotonic() if now is None else now
        if not overlong and len(self._lines) + len(lines) < self.max_lines and self._bytes < self.max_bytes:
            # The common case: whole chunk fits, no per-line work.
            self._lines.extend(lines)
            self._offsets.extend(offsets)
            self._bytes += sum(map(len, lines))
            return full
        for index, line in enumerate(lines):
            if index in overlong:
                self._overlong.add(len(self._lines))
            self._lines.append(line)
            self._offsets.append(offsets[index])
            self._bytes += len(line)
            if len(self._lines) >= self.max_lines or self._bytes >= self.max_bytes:
                full.append(self._cut())
                self.started = time.monotonic() if now is None else now
        if not self._lines:
            self.started = None
        return full

    def flush(self) -> RawBatch | None:
        """The open batch, if it has lines."""
        self.started = None
        return self._cut() if self._lines else None

    def __len__(self) -> int:
        return len(self._lines)

    def _cut(self) -> RawBatch:
        batch = RawBatch(self.source, self._lines, self._offsets, self.next_line_no, overlong=frozenset(self._overlong))
        self.next_line_no += len(self._lines)
        self._lines, self._offsets, self._overlong, self._bytes = [], [], set(), 0
        return batch


async def read_batches(
    read: Callable[[], Awaitable[bytes]],
    source: str,
    *,
    max_lines: int,
    max_age: float,
    max_bytes: int = 32 * 1024 * 1024,
    keyed: bool = False,
) -> AsyncIterator[RawBatch]:
    """Batches of a stream read by ``read`` (``b""`` at its end), cut by size, or by age when data is slow.

    With ``keyed`` each batch is to get its :meth:`RawBatch.content_key` as idempotency key
    (:attr:`RawBatch.key_by_content`; :class:`~services.collector.pipeline.Pipeline` computes it).
    """
    splitter = LineSplitter()
    batcher = Batcher(source, max_lines, max_bytes)
    pending: asyncio.Future[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(read())
            timeout = None if batcher.started is None else max(0.0, batcher.started + max_age - time.monotonic())
            done, _ = await asyncio.wait({pending}, timeout=timeout)
            if not done:
                batch = batcher.flush()
                if batch is not None:
                    yield _keyed(batch, keyed)
                continue
            data = pending.result()
            pending = None
            if not data:
                break
            for batch in batcher.add(*splitter.feed(data)):
                yield _keyed(batch, keyed)
        lines, offsets = splitter.finish()
        for batch in batcher.add(lines, offsets, set()):
            yield _keyed(batch, keyed)
        last = batcher.flush()
        if last is not None:
            yield _keyed(last, keyed)
    finally:
        if pending is not None:
            pending.cancel()


def _keyed(batch: RawBatch, keyed: bool) -> RawBatch:
    batch.key_by_content = keyed
    return batch


READ_SIZE: Final = 1024 * 1024


def file_reader(stream: BinaryIO) -> Callable[[], Awaitable[bytes]]:
    """An async ``read`` of a binary stream: direct for regular files, in a thread for pipes and terminals."""
    try:
        regular = stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        regular = False
    read1 = getattr(stream, "read1", stream.read)

    async def read_file() -> bytes:
        return read1(READ_SIZE)

    async def read_pipe() -> bytes:
        return await asyncio.to_thread(read1, READ_SIZE)

    return read_file if regular else read_pipe
