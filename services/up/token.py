"""The admin token ``ringfence up`` prints: the configured one, or one it creates and keeps.

With ``RINGFENCE_ADMIN_TOKEN`` set, that token is registered (once) as an admin token. Otherwise ``up``
creates an admin token on its first start, stores its digest in the token table like any other, and
keeps the token itself in ``<data_dir>/admin-token`` (mode 0600) so that the next start prints the same
one, as long as it is still valid; a revoked token is replaced by a new one.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import asyncpg

from services.api.auth import create_token, hash_token
from services.common.db import tokens

TOKEN_FILE: Final = "admin-token"
GENERATED_NAME: Final = "ringfence-up-admin"
CONFIGURED_NAME: Final = "admin (RINGFENCE_ADMIN_TOKEN)"
ACTOR: Final = "ringfence up"


@dataclass(frozen=True, slots=True)
class AdminToken:
    """The token and where it came from: ``configured``, ``reused`` or ``created``."""

    token: str = field(repr=False)
    origin: str


async def ensure_admin_token(conn: asyncpg.Connection, data_dir: Path, configured: str | None) -> AdminToken:
    """Make sure an admin token is valid in the database and return it."""
    if configured is not None:
        if await tokens.find_active_token(conn, hash_token(configured)) is None:
            await create_token(conn, CONFIGURED_NAME, "admin", token=configured, actor=ACTOR)
        return AdminToken(configured, "configured")
    path = data_dir / TOKEN_FILE
    saved = _read(path)
    if saved and await tokens.find_active_token(conn, hash_token(saved)) is not None:
        return AdminToken(saved, "reused")
    created = await create_token(conn, GENERATED_NAME, "admin", actor=ACTOR)
    _write_private(path, created)
    return AdminToken(created, "created")


def _read(path: Path) -> str | None:
    with contextlib.suppress(FileNotFoundError):
        return path.read_text().strip() or None
    return None


def _write_private(path: Path, text: str) -> None:
    scratch = path.with_name(path.name + ".new")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text + "\n")
    scratch.replace(path)
