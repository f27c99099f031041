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
from services.common.db.flow_reads import FLOW_GRAPH, READ_SETTINGS, FlowFilter, graph_args, widen_start

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
        args = graph_args(FlowFilter(namespace="shop", from_=from_, to=to))
        return await db.fetchval("EXPLAIN (FORMAT JSON) " + FLOW_GRAPH, *args)


@pytest.mark.parametrize(
    ("from_", "to", "relations"),
    [
        # Whole hours from the hourly rollup, or from the 5-minute one for the hours still pending (the
        # days of the whole hours, in both rollups); a window that starts on an hour also looks at the
        # 5-minute buckets that could overlap it from before (none between two hours: an empty range).
        (
            datetime(2024, 6, 5, tzinfo=UTC),
            datetime(2024, 6, 6, tzinfo=UTC),
            {"flow_edges_1h_p20240605", "flow_edges_5m_p20240604", "flow_edges_5m_p20240605"},
        ),
        (
            datetime(2024, 6, 5, 12, tzinfo=UTC),
            datetime(2024, 6, 6, 12, tzinfo=UTC),
            {
                "flow_edges_1h_p20240605",
                "flow_edges_1h_p20240606",
                "flow_edges_5m_p20240605",
                "flow_edges_5m_p20240606",
            },
        ),
        # Ragged ends on both sides: the 5-minute rollup of the first and of the last day.
        (
            datetime(2024, 6, 5, 12, 7, tzinfo=UTC),
            datetime(2024, 6, 6, 12, 53, tzinfo=UTC),
            {
                "flow_edges_1h_p20240605",
                "flow_edges_1h_p20240606",
                "flow_edges_5m_p20240605",
                "flow_edges_5m_p20240606",
            },
        ),
        # No whole hour: 5-minute buckets only.
        (datetime(2024, 6, 5, 12, 7, tzinfo=UTC), datetime(2024, 6, 5, 13, tzinfo=UTC), {"flow_edges_5m_p20240605"}),
        (
            None,
            datetime(2024, 6, 3, tzinfo=UTC),
            {
                "flow_edges_1h_p20240601",
                "flow_edges_1h_p20240602",
                "flow_edges_5m_p20240601",
                "flow_edges_5m_p20240602",
            },
        ),
    ],
)
async def test_flow_graph_window_is_pruned_when_planned(
    db: asyncpg.Connection, from_: datetime | None, to: datetime, relations: set[str]
) -> None:
    await flows.ensure_partitions(db, FIRST_DAY, FIRST_DAY + timedelta(days=DAYS - 1))
    planned, runtime_pruning = relations_and_pruning(await graph_plan(db, from_, to))
    assert not runtime_pruning
    has_whole_hours = relations != {"flow_edges_5m_p20240605"}
    assert planned == relations | ({"rollup_hours_pending"} if has_whole_hours else set())


def test_widen_start_reaches_back_one_bucket_and_keeps_the_unbounded_cases() -> None:
    assert widen_start(datetime(2024, 6, 5, tzinfo=UTC)) == datetime(2024, 6, 4, 23, 55, tzinfo=UTC)
    assert widen_start(None) is None
    assert widen_start(datetime.min.replace(tzinfo=UTC)) is None
