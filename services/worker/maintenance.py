"""Housekeeping: retention of old data, and recovery of jobs whose worker died."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.common.db import flows as flow_store
from services.common.db import jobs
from services.common.db import statistics as stats_store
from services.common.pubsub import JobEvents
from services.worker.jobrun import JobRun

logger = logging.getLogger(__name__)


async def run_retention(run: JobRun, *, now: datetime, retention_days: int) -> dict[str, Any]:
    """Drop flow partitions, statistics and finished jobs older than ``retention_days``."""
    cutoff = now - timedelta(days=retention_days)
    async with run.pool.acquire() as conn:
        dropped = await flow_store.drop_expired_partitions(conn, now, retention_days)
        statistics = await stats_store.delete_before(conn, cutoff)
        finished = await jobs.delete_finished(conn, timedelta(days=retention_days))
    logger.info("retention: dropped %d partitions, %d statistics rows, %d jobs", len(dropped), statistics, finished)
    return {"partitionsDropped": dropped, "statisticsDeleted": statistics, "jobsDeleted": finished}


async def reap_jobs(
    pool: asyncpg.Pool,
    events: JobEvents,
    enqueue: Callable[[jobs.Job], None],
    *,
    stale_after: timedelta,
    max_attempts: int,
) -> dict[str, Any]:
    """Requeue (and enqueue again) jobs whose worker went silent; fail those out of attempts."""
    async with pool.acquire() as conn:
        reaped = await jobs.reap_stale(conn, stale_after=stale_after, max_attempts=max_attempts)
    for job in reaped.requeued:
        logger.warning("job %s (%s) lost its worker or its message: enqueued again", job.id, job.kind)
        enqueue(job)
    for job in reaped.failed:
        logger.error("job %s (%s) failed: %s", job.id, job.kind, job.error)
        await events.publish(job.id, job.as_event(), final=True)
    return {"requeued": [job.id for job in reaped.requeued], "failed": [job.id for job in reaped.failed]}
