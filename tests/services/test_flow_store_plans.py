"""Plans of the flow store's window reads: the planner opens only the partitions the window touches.

A bound PostgreSQL can only compute at execution (``timestamptz - interval`` is merely stable) leaves
pruning to executor start-up, after the planner has opened and planned every daily partition: the
first query on a fresh connection then pays for the whole retention period.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.common.db import flows
from services.common.db.flow_reads import FLOW_GRAPH, READ_SETTINGS, widen_start

FIRST_DAY = date(2024, 6, 1)
DAYS = 12


def relations_and_pruning(plan: Any) -> tuple[set[str], bool]:
    """The relations a plan reads, and whether any pruning was left to execution."""
    relations: set[str] = set()
    runtime_pruning = False
    stack = [plan]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "Relation Name" in node:
                relations.add(node["Relation Name"])
            runtime_pruning = runtime_pruning or node.get("Subplans Removed", 0) > 0
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return relations, runtime_pruning


async def graph_plan(db: asyncpg.Connection, from_: datetime | None, to: datetime | None) -> Any:
    async with db.transaction():
        await db.execute(READ_SETTINGS)
        # The pool's connections decode json: the plan arrives as Python values.
        return await db.fetchval(
            "EXPLAIN (FORMAT JSON) " + FLOW_GRAPH, widen_start(from_), to, "shop", None, None, None, None, None
        )


@pytest.mark.parametrize(
    ("from_", "to", "days"),
    [
        # A day that starts at midnight also reads the previous day's last bucket, which overlaps it.
        (datetime(2024, 6, 5, tzinfo=UTC), datetime(2024, 6, 6, tzinfo=UTC), ("20240604", "20240605")),
        (datetime(2024, 6, 5, 12, tzinfo=UTC), datetime(2024, 6, 6, 12, tzinfo=UTC), ("20240605", "20240606")),
        (datetime(2024, 6, 5, 12, 7, tzinfo=UTC), datetime(2024, 6, 5, 13, tzinfo=UTC), ("20240605",)),
        (None, datetime(2024, 6, 3, tzinfo=UTC), ("20240601", "20240602")),
    ],
)
async def test_flow_graph_window_is_pruned_when_planned(
    db: asyncpg.Connection, from_: datetime | None, to: datetime, days: tuple[str, ...]
) -> None:
    await flows.ensure_partitions(db, FIRST_DAY, FIRST_DAY + timedelta(days=DAYS - 1))
    relations, runtime_pruning = relations_and_pruning(await graph_plan(db, from_, to))
    assert not runtime_pruning
    assert relations == {f"flow_edges_5m_p{day}" for day in days}


def test_widen_start_reaches_back_one_bucket_and_keeps_the_unbounded_cases() -> None:
    assert widen_start(datetime(2024, 6, 5, tzinfo=UTC)) == datetime(2024, 6, 4, 23, 55, tzinfo=UTC)
    assert widen_start(None) is None
    assert widen_start(datetime.min.replace(tzinfo=UTC)) is None
