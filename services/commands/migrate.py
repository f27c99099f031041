"""``ringfence migrate``: apply the database migrations."""

from __future__ import annotations

import asyncio

import asyncpg
import click

from services.commands import pass_settings
from services.common.db import Migration, MigrationError, connect, load_migrations, migrate
from services.common.settings import Settings


@click.command(name="migrate")
@click.option(
    "--database-url",
    metavar="URL",
    help="PostgreSQL to migrate [default: $RINGFENCE_DATABASE_URL].",
)
@pass_settings
def command(settings: Settings, database_url: str | None) -> None:
    """Apply the database migrations that have not been applied yet.

    Safe to run from several replicas at once: an advisory lock makes them take turns, and a migration
    is never applied twice. A migration file edited after it was applied is refused.
    """
    url = database_url or settings.database_url
    if url is None:
        raise click.UsageError(
            "no database: set RINGFENCE_DATABASE_URL or pass --database-url "
            "(`ringfence up` starts an embedded PostgreSQL instead)"
        )
    migrations = load_migrations()
    try:
        applied = asyncio.run(_migrate(url, migrations))
    except MigrationError as error:
        raise click.ClickException(str(error)) from None
    except (OSError, TimeoutError) as error:
        raise click.ClickException(f"cannot connect to the database: {error}") from None
    except asyncpg.PostgresError as error:
        raise click.ClickException(f"the database refused: {error}") from None
    for migration in applied:
        click.echo(f"applied {migration.filename}")
    latest = migrations[-1].filename if migrations else "none"
    if applied:
        click.echo(f"{len(applied)} migration(s) applied; the database is at {latest}")
    else:
        click.echo(f"the database is up to date at {latest}")


async def _migrate(url: str, migrations: list[Migration]) -> list[Migration]:
    connection = await connect(url)
    try:
        return await migrate(connection, migrations)
    finally:
        await connection.close()
