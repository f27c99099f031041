"""Partitions ahead of the data, retention behind it and the hourly rollups, run by the collector on timers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from services.collector.store import TRANSIENT_ERRORS
from services.common.db import flows, ingest, rejects, rollup_hours

logger = logging.getLogger(__name__)

DAYS_AHEAD = 2


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    """What one round did."""

    partitions_created: int
    partitions_dropped: list[str]
    rejects_deleted: int
    batches_deleted: int


async def maintain_once(conn: asyncpg.Connection, now: datetime, retention_days: int) -> MaintenanceReport:
    """Create daily partitions from yesterday to ``DAYS_AHEAD`` days ahead; drop and delete what retention expired."""
    today = now.date()
    created = await flows.ensure_partitions(conn, today - timedelta(days=1), today + timedelta(days=DAYS_AHEAD))
    dropped = await flows.drop_expired_partitions(conn, now, retention_days)
    cutoff = now - timedelta(days=retention_days)
    deleted_rejects = await rejects.delete_rejects_before(conn, cutoff)
    deleted_batches = await ingest.delete_batches_before(conn, cutoff)
    return MaintenanceReport(created, dropped, deleted_rejects, deleted_batches)


async def maintain_forever(
    pool: asyncpg.Pool,
    *,
    clock: Callable[[], datetime],
    retention_days: int,
    interval: float = 3600.0,
    stop: asyncio.Event,
) -> None:
    """Run :func:`maintain_once` now and every ``interval`` seconds until ``stop`` is set."""
    while not stop.is_set():
        try:
            async with pool.acquire() as conn:
                report = await maintain_once(conn, clock(), retention_days)
            if report.partitions_created or report.partitions_dropped:
                logger.info(
                    "flow partitions: %d created, dropped %s",
                    report.partitions_created,
                    ", ".join(report.partitions_dropped) or "none",
                )
            delay = interval
        except TRANSIENT_ERRORS as error:
            logger.warning("flow store maintenance failed (%s); retrying in a minute", error)
            delay = min(interval, 60.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


COMPACT_INTERVAL = 30.0
"""Seconds between two rounds of hourly-rollup compaction."""

COMPACT_SETTLE = timedelta(seconds=60)
"""How long an hour stays pending at least after a batch first marks it: batches of one flush arrive together."""


async def compact_forever(
    pool: asyncpg.Pool,
    *,
    clock: Callable[[], datetime],
    stop: asyncio.Event,
    interval: float = COMPACT_INTERVAL,
    settle: timedelta = COMPACT_SETTLE,
) -> None:
    """Every ``interval`` seconds, rebuild the hourly rollups of the hours marked ``settle`` ago or earlier."""
    while not stop.is_set():
        try:
            async with pool.acquire() as conn:
                report = await rollup_hours.compact(conn, marked_before=clock() - settle)
            if report.compacted or report.busy:
                logger.debug("hourly rollups: %d hours rebuilt, %d left busy", report.compacted, report.busy)
        except TRANSIENT_ERRORS as error:
            logger.warning("hourly rollup compaction failed (%s); retrying", error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
