"""One parsed batch -> PostgreSQL in one transaction, retried until the database takes it.

Everything a batch changes is written in a single transaction: the idempotency record, the tailer's
offset, interned values, the rows (binary COPY straight into ``flows``), the partial sums for the
rollups (COPY) and the inventory (from the batch's rows grouped and summed in Python) and the rejects.
A failure leaves nothing behind, and a retry of a batch that did commit (the answer was lost with the
connection) finds its idempotency record and stores nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg

from services.collector.parse import MAX_ERRORS, ParsedChunk
from services.collector.rollups import group_rows, rollup_deltas, sightings
from services.common.db import flow_copy, flows, ingest, inventory, rejects
from services.common.db.flows import StageRow, TraceSet
from services.common.db.ingest import BatchOutcome, FileOffset
from services.common.db.rejects import Reject

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08, and the client's "connection does not exist"
    asyncpg.InterfaceError,  # "connection is closed", "another operation is in progress" after a drop
    asyncpg.exceptions.OperatorInterventionError,  # 57: shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full
    asyncpg.exceptions.TransactionRollbackError,  # 40: deadlock, serialization failure
)
"""Errors after which the same batch is tried again (the database is away, busy or restarting)."""

# Errors that one bad row causes for the whole COPY or INSERT: the batch is then stored row by row
# (by halves) so that the rest goes in and only the offending rows become rejects.
ROW_ERRORS: Final = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    ValueError,
    TypeError,
    OverflowError,
    struct.error,  # a partial sum past 2**63, which the collector's own COPY tuples cannot hold
)


class ConnectionLostError(ConnectionError):
    """The connection died under a statement in a way asyncpg reports as an internal error (retried)."""


class DatabaseUnavailableError(RuntimeError):
    """The database did not take the batch before the deadline; nothing of it was stored."""


@dataclass(frozen=True, slots=True)
class WriteBatch:
    """A parsed batch with what the store needs to name it.

    ``batch_key`` names the batch for idempotency within ``source`` (None: not deduplicated);
    ``offset`` is the tailer position to save with it; ``lines`` are the raw lines the chunk's row
    indexes point into (for rows the database refuses).
    """

    source: str
    batch_key: str | None
    chunk: ParsedChunk
    lines: Sequence[bytes]
    offsets: Sequence[int]
    first_line_no: int
    offset: FileOffset | None = None


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The stored outcome; ``duplicate`` when the batch had been stored before (nothing written now)."""

    outcome: BatchOutcome
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry delays: exponential from ``initial`` to ``maximum`` seconds, with jitter."""

    initial: float = 0.1
    maximum: float = 5.0

    def delay(self, attempt: int) -> float:
        """The pause before retry number ``attempt`` (1-based)."""
        base: float = min(self.maximum, self.initial * 2 ** (attempt - 1))
        return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not cryptography


class FlowWriter:
    """Writes parsed batches through a pool; one per process (it caches what is already stored)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        clock: Callable[[], datetime],
        backoff: Backoff | None = None,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._backoff = backoff or Backoff()
        self._days: set[int] = set()
        self._label_sets: set[int] = set()
        self._trace_sets: set[int] = set()
        self.available = True
        """False from a failed attempt until the next success (HTTP answers 503 meanwhile)."""
        self.failed_attempts = 0
        """Attempts that failed for a transient reason and were retried (or given up), since start."""

    async def write(self, batch: WriteBatch, *, deadline: float | None = None) -> WriteResult:
        """Store ``batch``, retrying transient failures with backoff.

        ``deadline`` is a :func:`time.monotonic` time after which :class:`DatabaseUnavailableError`
        is raised instead of another retry (None: retry for ever).
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await self._write_once(batch)
            except TRANSIENT_ERRORS as error:
                self.available = False
                self.failed_attempts += 1
                self._forget()
                delay = self._backoff.delay(attempt)
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise DatabaseUnavailableError(f"database unavailable: {error}") from error
                logger.warning(
                    "storing batch of %s failed (%s); retry %d in %.1fs", batch.source, error, attempt, delay
                )
                await asyncio.sleep(delay)
                continue
            self.available = True
            return result

    def _forget(self) -> None:
        # After losing the connection nothing cached about the database is trusted (it may be a restore).
        self._days.clear()
        self._label_sets.clear()
        self._trace_sets.clear()

    async def _write_once(self, batch: WriteBatch) -> WriteResult:
        conn: asyncpg.Connection | None = None
        try:
            async with self._pool.acquire() as conn:
                return await self.write_on(conn, batch)
        except asyncpg.InternalClientError as error:
            if conn is None or not conn.is_closed():
                raise
            # The server went away in the middle of an operation (a COPY, a COMMIT, the pool's reset of the
            # connection on release) and asyncpg's state machine refused the next step: the connection is
            # gone (the pool closes it), which is worth a retry. A batch that did commit is found stored.
            raise ConnectionLostError(f"connection lost: {error}") from error

    async def write_on(self, conn: asyncpg.Connection, batch: WriteBatch) -> WriteResult:
        """Store ``batch`` once on ``conn`` (no retry); inside a caller's transaction it becomes a savepoint."""
        chunk = batch.chunk
        await self._ensure_partitions(conn, chunk.encoded.days)
        try:
            return await self._transaction(conn, batch, careful=False)
        except ROW_ERRORS as error:
            logger.warning("batch of %s refused as a whole (%s); storing it row by row", batch.source, error)
            # The partition cache could be what was wrong (dropped behind our back): make sure first.
            self._days.clear()
            await self._ensure_partitions(conn, chunk.encoded.days)
            return await self._transaction(conn, batch, careful=True)

    async def _ensure_partitions(self, conn: asyncpg.Connection, days: set[int]) -> None:
        missing = days - self._days
        if missing:
            await flows.ensure_partitions(conn, flows.day_of(min(missing)), flows.day_of(max(missing)))
            self._days |= set(range(min(missing), max(missing) + 1))

    async def _transaction(self, conn: asyncpg.Connection, batch: WriteBatch, *, careful: bool) -> WriteResult:
        chunk = batch.chunk
        now = self._clock()
        outcome = BatchOutcome(chunk.accepted, len(chunk.rejects), chunk.errors)
        new_labels = {key: value for key, value in chunk.encoded.label_sets.items() if key not in self._label_sets}
        new_traces = [trace for key, trace in chunk.encoded.trace_sets.items() if key not in self._trace_sets]
        async with conn.transaction():
            if batch.batch_key is not None:
                stored = await ingest.claim_batch(conn, batch.source, batch.batch_key, outcome, now)
                if stored is not None:
                    return WriteResult(stored, duplicate=True)
            if batch.offset is not None:
                await ingest.save_offset(conn, batch.source, batch.offset, now)
            await flows.insert_label_sets(conn, new_labels)
            await flows.insert_trace_sets(conn, new_traces)
            refused: list[Reject] = []
            if careful:
                refused = await self._store_isolating(conn, batch, list(range(len(chunk.encoded.rows))))
            elif chunk.encoded.rows:
                await _store_rows(
                    conn, chunk.encoded.rows, chunk.groups(), chunk.encoded.trace_sets, chunk.encoded.copy_data
                )
            await rejects.insert_rejects(conn, [*chunk.rejects, *refused], now)
            if refused:
                outcome = _with_refused(outcome, refused)
                if batch.batch_key is not None:
                    await ingest.update_batch(conn, batch.source, batch.batch_key, outcome)
        self._label_sets |= new_labels.keys()
        self._trace_sets |= {trace.id for trace in new_traces}
        return WriteResult(outcome)

    async def _store_isolating(self, conn: asyncpg.Connection, batch: WriteBatch, rows: list[int]) -> list[Reject]:
        """Store the rows at ``rows`` (indexes), halving around failures; return rejects for the refused ones."""
        if not rows:
            return []
        encoded = batch.chunk.encoded
        staged: list[StageRow] = [encoded.rows[index] for index in rows]
        copy_data = None if encoded.copy_data is None else [encoded.copy_data[index] for index in rows]
        try:
            async with conn.transaction():  # a savepoint: a failure undoes only this part
                await _store_rows(conn, staged, group_rows(staged), encoded.trace_sets, copy_data)
        except ROW_ERRORS as error:
            if len(rows) == 1:
                line_index = batch.chunk.row_lines[rows[0]]
                return [
                    Reject.from_line(
                        batch.source,
                        batch.first_line_no + line_index,
                        batch.offsets[line_index],
                        batch.lines[line_index],
                        reason=f"the database refused the record: {error}",
                    )
                ]
            middle = len(rows) // 2
            return [
                *await self._store_isolating(conn, batch, rows[:middle]),
                *await self._store_isolating(conn, batch, rows[middle:]),
            ]
        return []


async def _store_rows(
    conn: asyncpg.Connection,
    rows: Sequence[StageRow],
    groups: list[list[Any]],
    traces: Mapping[int, TraceSet],
    copy_data: Sequence[bytes] | None,
) -> None:
    """COPY ``rows`` into ``flows`` (their ``copy_data`` if the parser encoded them) and add their ``groups``
    to the rollups and the inventory."""
    deltas = rollup_deltas(groups, traces)
    if copy_data is not None and len(copy_data) == len(rows):
        await flow_copy.copy_encoded(conn, copy_data)
    else:
        await flows.copy_rows(conn, rows)
    await flow_copy.add_rollups(conn, deltas.edges, deltas.hits, deltas.hours)
    await inventory.record_seen(conn, sightings(groups))


def _with_refused(outcome: BatchOutcome, refused: list[Reject]) -> BatchOutcome:
    errors = list(outcome.errors)
    for reject in refused:
        if len(errors) >= MAX_ERRORS:
            break
        errors.append({"line": reject.line_no, "error": reject.reason})
    errors.sort(key=lambda error: error["line"] or 0)
    return BatchOutcome(outcome.accepted - len(refused), outcome.rejected + len(refused), errors[:MAX_ERRORS])
