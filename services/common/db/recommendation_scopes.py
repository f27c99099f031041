"""SQL for ``recommendation_scopes``: the namespaces that get recommendations continuously."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final, TypeAlias

import asyncpg

Executor: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True, slots=True)
class RecommendationScope:
    """Namespaces matching ``namespace_selector`` get a namespace-isolation policy in ``tier``."""

    name: str
    namespace_selector: str
    tier: str = "default"
    stabilization_period: timedelta = timedelta(minutes=10)
    window: timedelta = timedelta(days=1)
    enabled: bool = True


LIST_SCOPES: Final = """
SELECT name, namespace_selector, tier, stabilization_seconds, window_seconds, enabled
FROM recommendation_scopes ORDER BY name
"""


async def list_scopes(conn: Executor, *, enabled_only: bool = True) -> list[RecommendationScope]:
    """Every scope (only the enabled ones unless told otherwise)."""
    rows = await conn.fetch(LIST_SCOPES)
    scopes = [
        RecommendationScope(
            row["name"],
            row["namespace_selector"],
            row["tier"],
            timedelta(seconds=row["stabilization_seconds"]),
            timedelta(seconds=row["window_seconds"]),
            row["enabled"],
        )
        for row in rows
    ]
    return [scope for scope in scopes if scope.enabled or not enabled_only]


UPSERT_SCOPE: Final = """
INSERT INTO recommendation_scopes (name, namespace_selector, tier, stabilization_seconds, window_seconds, enabled)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (name) DO UPDATE SET namespace_selector = EXCLUDED.namespace_selector, tier = EXCLUDED.tier,
    stabilization_seconds = EXCLUDED.stabilization_seconds, window_seconds = EXCLUDED.window_seconds,
    enabled = EXCLUDED.enabled
"""


async def save_scope(conn: Executor, scope: RecommendationScope) -> None:
    """Create or replace ``scope``."""
    await conn.execute(
        UPSERT_SCOPE,
        scope.name,
        scope.namespace_selector,
        scope.tier,
        int(scope.stabilization_period.total_seconds()),
        int(scope.window.total_seconds()),
        scope.enabled,
    )


DELETE_SCOPE: Final = "DELETE FROM recommendation_scopes WHERE name = $1"


async def delete_scope(conn: Executor, name: str) -> bool:
    """Delete the scope ``name``; False when there was none."""
    status: str = await conn.execute(DELETE_SCOPE, name)
    return status.endswith(" 1")
