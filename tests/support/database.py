"""A connection whose changes are rolled back: the per-test isolation of the database fixtures."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg


@contextlib.asynccontextmanager
async def rolled_back(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection of ``pool`` inside a transaction that is rolled back on exit."""
    async with pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        try:
            yield connection
        finally:
            await transaction.rollback()
