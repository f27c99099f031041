"""Connections to PostgreSQL: an asyncpg pool (or one connection) set up the same way everywhere.

Every connection decodes ``json``/``jsonb`` columns to Python values and encodes Python values given
for them, so query modules pass and receive dicts and lists, never JSON text.
"""

from __future__ import annotations

from typing import Any, Final

import asyncpg
import orjson

APPLICATION_NAME: Final = "ringfence"


def _encode_json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def configure_connection(connection: asyncpg.Connection) -> None:
    """Install the JSON codecs on a new connection (the pool's ``init`` hook)."""
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(
            type_name, schema="pg_catalog", encoder=_encode_json, decoder=orjson.loads, format="text"
        )


async def create_pool(
    database_url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    command_timeout: float | None = 60.0,
) -> asyncpg.Pool:
    """Open a pool of connections to ``database_url``, each configured by :func:`configure_connection`."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        init=configure_connection,
        server_settings={"application_name": APPLICATION_NAME, "timezone": "UTC"},
    )
    return pool


async def connect(database_url: str, *, command_timeout: float | None = 60.0) -> asyncpg.Connection:
    """Open one connection configured like the pool's (for commands that need a single one)."""
    connection: asyncpg.Connection = await asyncpg.connect(
        database_url,
        command_timeout=command_timeout,
        server_settings={"application_name": APPLICATION_NAME, "timezone": "UTC"},
    )
    try:
        await configure_connection(connection)
    except BaseException:
        await connection.close()
        raise
    return connection
