"""Migrations: applied once, in order, recorded, guarded by checksums and by an advisory lock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner

from services.cli import main
from services.common.db import ChecksumMismatchError, Migration, MigrationError, connect, load_migrations, migrate
from services.common.db.migrate import default_migrations_dir

REPOSITORY = Path(__file__).resolve().parents[2]
INITIAL_TABLES = {"resources", "resource_versions", "audit_log", "api_tokens", "jobs"}


@pytest.fixture
async def empty_url(database_factory) -> str:
    return await database_factory()


@pytest.fixture
async def empty_db(empty_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect(empty_url)
    yield connection
    await connection.close()


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, sql in files.items():
        (folder / name).write_text(sql)
    return folder


async def tables(connection: asyncpg.Connection) -> set[str]:
    rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows}


async def recorded(connection: asyncpg.Connection) -> list[tuple[int, str, str]]:
    rows = await connection.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    return [(row["version"], row["name"], row["checksum"]) for row in rows]


# Loading files, no server.


def test_shipped_migrations_are_found_through_the_package_and_match_db_migrations():
    shipped = load_migrations()
    on_disk = sorted(path.name for path in (REPOSITORY / "db" / "migrations").glob("*.sql"))
    assert [migration.filename for migration in shipped] == on_disk
    assert shipped[0].filename == "0001_initial.sql"
    assert [m.version for m in shipped] == sorted({m.version for m in shipped})
    assert default_migrations_dir().joinpath("0001_initial.sql").is_file()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"1_short.sql": "SELECT 1"}, "NNNN_lowercase_name.sql"),
        ({"0001_Upper.sql": "SELECT 1"}, "NNNN_lowercase_name.sql"),
        ({"0001-dash.sql": "SELECT 1"}, "NNNN_lowercase_name.sql"),
        ({"0001_a.sql": "SELECT 1", "0001_b.sql": "SELECT 2"}, "two migrations have version 0001"),
    ],
)
def test_badly_named_or_duplicate_files_are_refused(tmp_path, files, message):
    write(tmp_path, files)
    with pytest.raises(MigrationError, match=message):
        load_migrations(tmp_path)


def test_files_load_in_version_order_and_other_files_are_ignored(tmp_path):
    write(tmp_path, {"0010_later.sql": "SELECT 10", "0002_early.sql": "SELECT 2", "README.md": "notes"})
    loaded = load_migrations(tmp_path)
    assert [(m.version, m.name) for m in loaded] == [(2, "early"), (10, "later")]
    assert loaded[0].checksum != loaded[1].checksum


# Against PostgreSQL.


async def test_migrate_applies_everything_once_and_records_it(empty_db):
    shipped = load_migrations()
    applied = await migrate(empty_db)
    assert applied == shipped
    assert await recorded(empty_db) == [(m.version, m.name, m.checksum) for m in shipped]
    assert await tables(empty_db) >= INITIAL_TABLES

    assert await migrate(empty_db) == []
    assert await recorded(empty_db) == [(m.version, m.name, m.checksum) for m in shipped]


async def test_migrate_through_a_pool_applies_only_new_files(tmp_path, empty_url):
    write(tmp_path, {"0001_one.sql": "CREATE TABLE one (x int)"})
    pool = await asyncpg.create_pool(empty_url, min_size=1, max_size=2)
    try:
        assert [m.name for m in await migrate(pool, load_migrations(tmp_path))] == ["one"]
        write(tmp_path, {"0002_two.sql": "CREATE TABLE two (x int)"})
        assert [m.name for m in await migrate(pool, load_migrations(tmp_path))] == ["two"]
        async with pool.acquire() as connection:
            assert {"one", "two"} <= await tables(connection)
    finally:
        await pool.close()


async def test_a_migration_changed_after_it_was_applied_is_refused(tmp_path, empty_db):
    write(tmp_path, {"0001_one.sql": "CREATE TABLE one (x int)"})
    await migrate(empty_db, load_migrations(tmp_path))
    write(tmp_path, {"0001_one.sql": "CREATE TABLE one (x bigint)", "0002_two.sql": "CREATE TABLE two (x int)"})

    with pytest.raises(ChecksumMismatchError, match=r"0001_one\.sql was changed"):
        await migrate(empty_db, load_migrations(tmp_path))
    assert "two" not in await tables(empty_db)
    assert [version for version, _, _ in await recorded(empty_db)] == [1]


async def test_a_failing_migration_leaves_no_trace_and_earlier_ones_stay(tmp_path, empty_db):
    write(
        tmp_path,
        {
            "0001_one.sql": "CREATE TABLE one (x int)",
            "0002_broken.sql": "CREATE TABLE half (x int); SELECT * FROM no_such_table;",
        },
    )
    with pytest.raises(asyncpg.UndefinedTableError):
        await migrate(empty_db, load_migrations(tmp_path))
    assert "half" not in await tables(empty_db)
    assert [version for version, _, _ in await recorded(empty_db)] == [1]
    # The lock was released: fixing the file lets the next run go through.
    write(tmp_path, {"0002_broken.sql": "CREATE TABLE half (x int);"})
    assert [m.version for m in await migrate(empty_db, load_migrations(tmp_path))] == [2]


async def test_a_database_migrated_by_a_newer_ringfence_is_refused(tmp_path, empty_db):
    write(tmp_path, {"0001_one.sql": "CREATE TABLE one (x int)", "0002_two.sql": "CREATE TABLE two (x int)"})
    await migrate(empty_db, load_migrations(tmp_path))
    (tmp_path / "0002_two.sql").unlink()
    with pytest.raises(MigrationError, match=r"does not know .*0002_two"):
        await migrate(empty_db, load_migrations(tmp_path))


async def test_concurrent_migrations_take_turns_and_apply_each_file_once(tmp_path, empty_url):
    # Each file is slow and not idempotent: without the lock both runs would apply it and one would fail.
    write(
        tmp_path,
        {
            "0001_counter.sql": "CREATE TABLE counter (n int); SELECT pg_sleep(0.3);",
            "0002_bump.sql": "INSERT INTO counter VALUES (1); SELECT pg_sleep(0.3);",
        },
    )
    migrations = load_migrations(tmp_path)
    first, second = await connect(empty_url), await connect(empty_url)
    try:
        results = await asyncio.gather(migrate(first, migrations), migrate(second, migrations))
        assert sorted(len(result) for result in results) == [0, 2]
        assert await first.fetchval("SELECT count(*) FROM counter") == 1
        assert [version for version, _, _ in await recorded(first)] == [1, 2]
    finally:
        await first.close()
        await second.close()


def test_migrate_command_prints_what_it_applied(empty_url, monkeypatch):
    monkeypatch.setenv("RINGFENCE_DATABASE_URL", empty_url)
    runner = CliRunner()

    first = runner.invoke(main, ["migrate"])
    assert first.exit_code == 0, first.output
    assert "applied 0001_initial.sql" in first.output

    second = runner.invoke(main, ["migrate"])
    assert second.exit_code == 0, second.output
    assert "applied" not in second.output
    assert "up to date" in second.output


def test_migrate_command_without_a_database_explains_what_to_set(monkeypatch):
    monkeypatch.delenv("RINGFENCE_DATABASE_URL", raising=False)
    result = CliRunner().invoke(main, ["migrate"])
    assert result.exit_code == 2
    assert "RINGFENCE_DATABASE_URL" in result.output


def test_migration_file_name_round_trips():
    migration = Migration.from_text("0042_add_flows.sql", "SELECT 1")
    assert (migration.version, migration.name, migration.filename) == (42, "add_flows", "0042_add_flows.sql")


# The initial schema's rules, which the query modules rely on.


async def test_resources_are_unique_per_kind_namespace_and_name_with_growing_versions(db):
    insert = "INSERT INTO resources (kind, namespace, name, spec) VALUES ($1, $2, $3, $4) RETURNING resource_version"
    first = await db.fetchval(insert, "Tier", "", "security", {"kind": "Tier"})
    second = await db.fetchval(insert, "NetworkPolicy", "storefront", "security", {"kind": "NetworkPolicy"})
    assert second > first
    with pytest.raises(asyncpg.UniqueViolationError):
        async with db.transaction():
            await db.execute(insert, "Tier", "", "security", {"kind": "Tier"})
    assert await db.fetchval("SELECT spec FROM resources WHERE kind = 'Tier'") == {"kind": "Tier"}


@pytest.mark.parametrize(
    ("update", "violation"),
    [
        ("UPDATE jobs SET state = 'exploded'", asyncpg.CheckViolationError),
        ("UPDATE jobs SET progress = 1.5", asyncpg.CheckViolationError),
        ("UPDATE jobs SET state = 'succeeded'", asyncpg.CheckViolationError),  # finished_at missing
        ("UPDATE jobs SET state = 'succeeded', finished_at = now(), progress = 1", None),
    ],
)
async def test_jobs_states_and_progress_are_checked(db, update, violation):
    job = await db.fetchrow("INSERT INTO jobs (kind, requested_by) VALUES ('recommend', 'alice') RETURNING *")
    assert (job["state"], job["progress"], job["attempts"], job["params"]) == ("queued", 0, 0, {})
    if violation is None:
        await db.execute(update)
    else:
        with pytest.raises(violation):
            await db.execute(update)
