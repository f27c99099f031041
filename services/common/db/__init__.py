"""PostgreSQL access: the connection pool and the schema migrations. One query module per table lives here too."""

from services.common.db.migrate import ChecksumMismatchError, Migration, MigrationError, load_migrations, migrate
from services.common.db.pool import configure_connection, connect, create_pool

__all__ = [
    "ChecksumMismatchError",
    "Migration",
    "MigrationError",
    "configure_connection",
    "connect",
    "create_pool",
    "load_migrations",
    "migrate",
]
