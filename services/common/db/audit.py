"""SQL for ``audit_log``: who changed what, when, with the document before and after."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited change; ``before`` is None for a creation, ``after`` None for a deletion."""

    id: int
    at: datetime
    actor: str
    action: str
    kind: str | None
    namespace: str | None
    name: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Optional equality filters; None matches anything."""

    actor: str | None = None
    action: str | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None


INSERT_ENTRY: Final = """
INSERT INTO audit_log (actor, action, kind, namespace, name, before, after)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb)
RETURNING id
"""


async def record(
    conn: asyncpg.Connection,
    *,
    actor: str,
    action: str,
    kind: str | None = None,
    namespace: str | None = None,
    name: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> int:
    """Append one entry (inside the caller's transaction, so it commits with the change); return its id."""
    entry_id: int = await conn.fetchval(INSERT_ENTRY, actor, action, kind, namespace, name, before, after)
    return entry_id


# Entries are paged newest first by id; the cursor is the last id seen.
SELECT_PAGE: Final = """
SELECT id, at, actor, action, kind, namespace, name, before, after
FROM audit_log
WHERE ($1::bigint IS NULL OR id < $1)
  AND ($3::text IS NULL OR actor = $3)
  AND ($4::text IS NULL OR action = $4)
  AND ($5::text IS NULL OR kind = $5)
  AND ($6::text IS NULL OR namespace = $6)
  AND ($7::text IS NULL OR name = $7)
ORDER BY id DESC
LIMIT $2
"""

COUNT_ENTRIES: Final = """
SELECT count(*) FROM audit_log
WHERE ($1::text IS NULL OR actor = $1)
  AND ($2::text IS NULL OR action = $2)
  AND ($3::text IS NULL OR kind = $3)
  AND ($4::text IS NULL OR namespace = $4)
  AND ($5::text IS NULL OR name = $5)
"""


async def page(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    first: int,
    before_id: int | None = None,
    where: AuditFilter | None = None,
) -> tuple[list[AuditEntry], bool]:
    """Up to ``first`` entries older than ``before_id`` (newest first) and whether more follow."""
    where = where or AuditFilter()
    rows = await conn.fetch(
        SELECT_PAGE, before_id, first + 1, where.actor, where.action, where.kind, where.namespace, where.name
    )
    entries = [_entry(row) for row in rows[:first]]
    return entries, len(rows) > first


async def count(conn: asyncpg.Connection | asyncpg.Pool, where: AuditFilter | None = None) -> int:
    """How many entries match ``where``."""
    where = where or AuditFilter()
    total: int = await conn.fetchval(COUNT_ENTRIES, where.actor, where.action, where.kind, where.namespace, where.name)
    return total


def _entry(row: asyncpg.Record) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        kind=row["kind"],
        namespace=row["namespace"],
        name=row["name"],
        before=row["before"],
        after=row["after"],
    )
