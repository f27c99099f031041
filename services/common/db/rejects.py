"""SQL for ``flow_rejects``: lines the collector could not store, with where they came from and why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

RAW_LIMIT: Final = 4096
"""Characters of a rejected line kept; longer lines are cut and flagged ``raw_truncated``."""


@dataclass(frozen=True, slots=True)
class Reject:
    """One rejected line. ``line_no`` is 1-based within its source; ``field`` is empty when the whole line is wrong."""

    source: str
    line_no: int | None
    byte_offset: int | None
    raw: str
    raw_truncated: bool
    reason: str
    field: str = ""

    @classmethod
    def from_line(
        cls, source: str, line_no: int | None, byte_offset: int | None, raw: bytes, *, reason: str, field: str = ""
    ) -> Reject:
        """A reject keeping at most :data:`RAW_LIMIT` characters of ``raw`` (decoded leniently, NULs replaced)."""
        text = raw[: RAW_LIMIT * 4].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        truncated = len(text) > RAW_LIMIT or len(raw) > RAW_LIMIT * 4
        return cls(source, line_no, byte_offset, text[:RAW_LIMIT], truncated, reason, field)


@dataclass(frozen=True, slots=True)
class StoredReject:
    """A reject as read back, with its id and when it was received."""

    id: int
    received_at: datetime
    reject: Reject


_COLUMNS: Final = ("received_at", "source", "line_no", "byte_offset", "raw", "raw_truncated", "reason", "field")


async def insert_rejects(conn: asyncpg.Connection, rejects: Sequence[Reject], received_at: datetime) -> None:
    """Store ``rejects`` (COPY: a file of garbage is as cheap to refuse as a file of flows)."""
    if not rejects:
        return
    records = [
        (received_at, r.source, r.line_no, r.byte_offset, r.raw, r.raw_truncated, r.reason, r.field or None)
        for r in rejects
    ]
    await conn.copy_records_to_table("flow_rejects", records=records, columns=_COLUMNS)


LIST_REJECTS: Final = """
SELECT id, received_at, source, line_no, byte_offset, raw, raw_truncated, reason, field
FROM flow_rejects
WHERE ($1::text IS NULL OR source = $1) AND ($2::bigint IS NULL OR id < $2)
ORDER BY id DESC
LIMIT $3
"""


async def list_rejects(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    source: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[StoredReject]:
    """The most recent rejects first (optionally of one source, older than ``before_id``)."""
    rows = await conn.fetch(LIST_REJECTS, source, before_id, limit)
    return [
        StoredReject(
            row["id"],
            row["received_at"],
            Reject(
                row["source"],
                row["line_no"],
                row["byte_offset"],
                row["raw"],
                row["raw_truncated"],
                row["reason"],
                row["field"] or "",
            ),
        )
        for row in rows
    ]


COUNT_REJECTS: Final = "SELECT count(*) FROM flow_rejects WHERE ($1::text IS NULL OR source = $1)"


async def count_rejects(conn: asyncpg.Connection | asyncpg.Pool, *, source: str | None = None) -> int:
    """How many rejects are stored (of one source, or all)."""
    count: int = await conn.fetchval(COUNT_REJECTS, source)
    return count


DELETE_REJECTS_BEFORE: Final = "DELETE FROM flow_rejects WHERE received_at < $1"


async def delete_rejects_before(conn: asyncpg.Connection, cutoff: datetime) -> int:
    """Forget rejects received before ``cutoff`` (retention); return how many."""
    status: str = await conn.execute(DELETE_REJECTS_BEFORE, cutoff)
    return int(status.rsplit(" ", 1)[-1])
