"""SQL for the collector's bookkeeping: ``ingest_batches`` (idempotency) and ``ingest_offsets`` (tailers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg
import orjson


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What storing a batch gave: counts and the first errors (as answered to the client)."""

    accepted: int
    rejected: int
    errors: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class FileOffset:
    """Where a tailed file stands: its identity, the byte after the last stored line, lines read."""

    file_id: str
    position: int
    line_no: int


# DO NOTHING + RETURNING: a row comes back only to the transaction that claimed the batch. A
# concurrent claimer of the same key waits for the first to commit (or roll back) on the index.
CLAIM_BATCH: Final = """
INSERT INTO ingest_batches (source, batch_key, accepted, rejected, errors, received_at)
VALUES ($1, $2, $3, $4, $5::text::jsonb, $6)
ON CONFLICT (source, batch_key) DO NOTHING
RETURNING true
"""
SELECT_BATCH: Final = (
    "SELECT accepted, rejected, errors::text AS errors FROM ingest_batches WHERE source = $1 AND batch_key = $2"
)
UPDATE_BATCH: Final = """
UPDATE ingest_batches SET accepted = $3, rejected = $4, errors = $5::text::jsonb WHERE source = $1 AND batch_key = $2
"""


async def claim_batch(
    conn: asyncpg.Connection, source: str, batch_key: str, outcome: BatchOutcome, received_at: datetime
) -> BatchOutcome | None:
    """Record that this batch is being stored; None if claimed, else the outcome stored the first time."""
    claimed = await conn.fetchval(
        CLAIM_BATCH, source, batch_key, outcome.accepted, outcome.rejected, _json(outcome.errors), received_at
    )
    if claimed:
        return None
    row = await conn.fetchrow(SELECT_BATCH, source, batch_key)
    if row is None:  # pragma: no cover - the conflicting row cannot vanish inside our snapshot's successor
        return None
    return BatchOutcome(row["accepted"], row["rejected"], orjson.loads(row["errors"]))


async def update_batch(conn: asyncpg.Connection, source: str, batch_key: str, outcome: BatchOutcome) -> None:
    """Correct a claimed batch's counts (when the database refused some rows the parser had accepted)."""
    await conn.execute(UPDATE_BATCH, source, batch_key, outcome.accepted, outcome.rejected, _json(outcome.errors))


DELETE_BATCHES_BEFORE: Final = "DELETE FROM ingest_batches WHERE received_at < $1"


async def delete_batches_before(conn: asyncpg.Connection, cutoff: datetime) -> int:
    """Forget idempotency records older than ``cutoff`` (their flows are past retention too)."""
    status: str = await conn.execute(DELETE_BATCHES_BEFORE, cutoff)
    return int(status.rsplit(" ", 1)[-1])


SELECT_OFFSET: Final = "SELECT file_id, position, line_no FROM ingest_offsets WHERE source = $1"
SAVE_OFFSET: Final = """
INSERT INTO ingest_offsets (source, file_id, position, line_no, updated_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (source) DO UPDATE SET
    file_id = EXCLUDED.file_id, position = EXCLUDED.position, line_no = EXCLUDED.line_no,
    updated_at = EXCLUDED.updated_at
"""


async def load_offset(conn: asyncpg.Connection | asyncpg.Pool, source: str) -> FileOffset | None:
    """The stored position of a tailed source, if any."""
    row = await conn.fetchrow(SELECT_OFFSET, source)
    return None if row is None else FileOffset(row["file_id"], row["position"], row["line_no"])


async def save_offset(conn: asyncpg.Connection, source: str, offset: FileOffset, updated_at: datetime) -> None:
    """Record a tailed source's position (inside the transaction of the batch that reached it)."""
    await conn.execute(SAVE_OFFSET, source, offset.file_id, offset.position, offset.line_no, updated_at)


def _json(value: object) -> str:
    # JSON goes over the wire as text cast in SQL, so no connection codec is assumed.
    return orjson.dumps(value).decode()
