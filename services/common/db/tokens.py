"""SQL for ``api_tokens``: bearer tokens stored as their SHA-256 digest, never in clear."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One stored token: who it names and what its role grants (the secret itself is not kept)."""

    id: int
    name: str
    role: str
    tiers: tuple[str, ...]
    namespaces: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


INSERT_TOKEN: Final = """
INSERT INTO api_tokens (name, role, tiers, namespaces, token_hash)
VALUES ($1, $2, $3::text[], $4::text[], $5)
RETURNING id, name, role, tiers, namespaces, created_at, revoked_at
"""


async def insert_token(
    conn: asyncpg.Connection,
    *,
    name: str,
    role: str,
    tiers: Sequence[str],
    namespaces: Sequence[str],
    token_hash: str,
) -> TokenRecord:
    """Store a token's digest and grants; return the stored record."""
    row = await conn.fetchrow(INSERT_TOKEN, name, role, list(tiers), list(namespaces), token_hash)
    assert row is not None
    return _record(row)


FIND_ACTIVE_TOKEN: Final = """
SELECT id, name, role, tiers, namespaces, created_at, revoked_at
FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL
"""


async def find_active_token(conn: asyncpg.Connection | asyncpg.Pool, token_hash: str) -> TokenRecord | None:
    """The unrevoked token with this digest, if any."""
    row = await conn.fetchrow(FIND_ACTIVE_TOKEN, token_hash)
    return None if row is None else _record(row)


LIST_TOKENS: Final = "SELECT id, name, role, tiers, namespaces, created_at, revoked_at FROM api_tokens ORDER BY id"


async def list_tokens(conn: asyncpg.Connection) -> list[TokenRecord]:
    """Every token, revoked ones included, oldest first."""
    return [_record(row) for row in await conn.fetch(LIST_TOKENS)]


REVOKE_TOKENS: Final = """
UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL
"""


async def revoke_tokens(conn: asyncpg.Connection, name: str) -> int:
    """Revoke every active token called ``name``; return how many were revoked."""
    status: str = await conn.execute(REVOKE_TOKENS, name)
    return int(status.rsplit(" ", 1)[-1])


def _record(row: asyncpg.Record) -> TokenRecord:
    return TokenRecord(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        tiers=tuple(row["tiers"]),
        namespaces=tuple(row["namespaces"]),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )
