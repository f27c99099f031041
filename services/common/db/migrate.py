"""Schema migrations: ordered ``NNNN_name.sql`` files, each applied once, in its own transaction.

The files live in ``db/migrations/`` at the top of the repository; ``services/common/db/migrations`` is a
symbolic link to that folder, which makes them package data of an installed Ringfence.

:func:`migrate` takes a PostgreSQL advisory lock first, so replicas starting together migrate one after
the other: the first applies, the others find nothing left to do. Applied files are recorded with their
SHA-256 in ``schema_migrations``; a file edited after it was applied is refused, as is a database that
holds migrations this code does not know (a newer Ringfence migrated it).

A migration runs inside a transaction, so statements that refuse one (``CREATE INDEX CONCURRENTLY``)
cannot be used; a failing migration leaves no trace.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final

import asyncpg

MIGRATIONS_PACKAGE: Final = "services.common.db.migrations"

# The key of the advisory lock: "ringfenc" in ASCII, a constant every replica agrees on.
ADVISORY_LOCK_KEY: Final = int.from_bytes(b"ringfenc", "big")

_FILE_NAME: Final = re.compile(r"(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql")

CREATE_VERSION_TABLE: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
SELECT_APPLIED: Final = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
INSERT_APPLIED: Final = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"
LOCK: Final = "SELECT pg_advisory_lock($1)"
UNLOCK: Final = "SELECT pg_advisory_unlock($1)"


class MigrationError(RuntimeError):
    """The migrations cannot be applied as they are."""


class ChecksumMismatchError(MigrationError):
    """A migration file changed after it was applied to this database."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str
    checksum: str

    @property
    def filename(self) -> str:
        """The file name, ``NNNN_name.sql``."""
        return f"{self.version:04d}_{self.name}.sql"

    @classmethod
    def from_text(cls, filename: str, sql: str) -> Migration:
        """Build a migration from its file name and SQL text."""
        match = _FILE_NAME.fullmatch(filename)
        if match is None:
            raise MigrationError(f"migration file {filename!r} is not named NNNN_lowercase_name.sql")
        checksum = hashlib.sha256(sql.encode()).hexdigest()
        return cls(int(match["version"]), match["name"], sql, checksum)


def default_migrations_dir() -> Traversable:
    """The migrations shipped with Ringfence."""
    return files(MIGRATIONS_PACKAGE)


def load_migrations(directory: Traversable | Path | None = None) -> list[Migration]:
    """Read every ``*.sql`` file of ``directory`` (the shipped migrations by default), in version order."""
    folder = default_migrations_dir() if directory is None else directory
    migrations = [
        Migration.from_text(entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql") and entry.is_file()
    ]
    migrations.sort(key=lambda migration: migration.version)
    for previous, current in itertools.pairwise(migrations):
        if previous.version == current.version:
            raise MigrationError(
                f"two migrations have version {current.version:04d}: {previous.filename}, {current.filename}"
            )
    return migrations


async def migrate(
    target: asyncpg.Pool | asyncpg.Connection, migrations: Sequence[Migration] | None = None
) -> list[Migration]:
    """Apply the migrations not yet applied, in order; return those applied by this call.

    ``target`` is a pool (one connection is borrowed) or a connection. Idempotent: a second call
    applies nothing. Raises :class:`ChecksumMismatchError` when an applied file has changed and
    :class:`MigrationError` for other inconsistencies, before applying anything.
    """
    wanted = load_migrations() if migrations is None else list(migrations)
    if isinstance(target, asyncpg.Pool):
        async with target.acquire() as connection:
            return await _migrate_locked(connection, wanted)
    return await _migrate_locked(target, wanted)


async def _migrate_locked(connection: asyncpg.Connection, wanted: list[Migration]) -> list[Migration]:
    await connection.execute(LOCK, ADVISORY_LOCK_KEY)
    try:
        await connection.execute(CREATE_VERSION_TABLE)
        applied = {row["version"]: row for row in await connection.fetch(SELECT_APPLIED)}
        _check_applied(applied, wanted)
        done: list[Migration] = []
        for migration in wanted:
            if migration.version in applied:
                continue
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(INSERT_APPLIED, migration.version, migration.name, migration.checksum)
            done.append(migration)
        return done
    finally:
        await connection.execute(UNLOCK, ADVISORY_LOCK_KEY)


def _check_applied(applied: dict[int, asyncpg.Record], wanted: Iterable[Migration]) -> None:
    known = {migration.version: migration for migration in wanted}
    unknown = sorted(set(applied) - set(known))
    if unknown:
        names = ", ".join(f"{version:04d}_{applied[version]['name']}" for version in unknown)
        raise MigrationError(
            f"the database has migrations this version of Ringfence does not know ({names}); "
            "it was migrated by a newer Ringfence"
        )
    for version, row in applied.items():
        migration = known[version]
        if row["checksum"] != migration.checksum:
            raise ChecksumMismatchError(
                f"migration {migration.filename} was changed after it was applied "
                f"(applied sha256 {row['checksum'][:12]}…, file sha256 {migration.checksum[:12]}…); "
                "never edit an applied migration: add a new one"
            )
