"""Statistics jobs: per policy rule, what the stored flows would have hit, counted by evaluation.

Incremental: a 5-minute bucket is evaluated again only when it holds a different number of records
than when it was last evaluated (new or late flows) or the resources changed since (their generation);
then only the rows whose counts changed are written. One run at a time (an advisory lock): a run that
finds another one working returns at once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg

from ringfence.engine import NotACalicoEndpointError, PolicyEngine
from ringfence.flows.record import Flow
from ringfence.stats import EvaluatedFlow, count_hits, diff_counts
from services.common.db import flows as flow_store
from services.common.db import resources as resource_store
from services.common.db import statistics as stats_store
from services.worker.jobrun import JobRun
from services.worker.preview import parse_window
from services.worker.state import load_resources

logger = logging.getLogger(__name__)

DEFAULT_WINDOW: Final = timedelta(days=1)
_BUCKET: Final = timedelta(seconds=stats_store.BUCKET_SECONDS)
_BATCH: Final = 4_000


async def run_statistics(run: JobRun, *, now: datetime) -> dict[str, Any]:
    """The body of ``ringfence.statistics``: bring the window's buckets up to date (default: the last day)."""
    from_, to = parse_window(run.params)
    if from_ is None:
        from_ = now - DEFAULT_WINDOW
    async with run.pool.acquire() as lock_conn:
        if not await stats_store.try_lock(lock_conn):
            return {"skipped": "another statistics run is in progress"}
        try:
            return await _refresh(run, floor_bucket(from_), to)
        finally:
            await stats_store.unlock(lock_conn)


async def _refresh(run: JobRun, from_: datetime, to: datetime | None) -> dict[str, Any]:
    async with run.pool.acquire() as conn:
        generation = await resource_store.generation(conn)
        engine = PolicyEngine(await load_resources(conn))
        records = await stats_store.bucket_records(conn, from_, to)
        states = await stats_store.bucket_states(conn, from_, to)
    todo = [
        (bucket, count)
        for bucket, count in sorted(records.items())
        if states.get(bucket) != stats_store.BucketState(count, generation)
    ]
    written = deleted = 0
    for index, (bucket, count) in enumerate(todo):
        async with run.pool.acquire() as conn:
            evaluated = await _evaluate_bucket(conn, engine, bucket)
            upserts, deletes = diff_counts(await stats_store.bucket_counts(conn, bucket), count_hits(evaluated))
            await stats_store.write_bucket(conn, bucket, upserts, deletes, stats_store.BucketState(count, generation))
        written += len(upserts)
        deleted += len(deletes)
        await run.checkpoint((index + 1) / len(todo))
    return {
        "buckets": len(records),
        "evaluated": len(todo),
        "rowsWritten": written,
        "rowsDeleted": deleted,
        "generation": generation,
    }


async def _evaluate_bucket(conn: asyncpg.Connection, engine: PolicyEngine, bucket: datetime) -> list[EvaluatedFlow]:
    evaluated: list[EvaluatedFlow] = []
    batch: list[tuple[Flow, int]] = []
    async for key in flow_store.flow_keys(conn, bucket, bucket + _BUCKET):
        batch.append((key.flow, key.records))
        if len(batch) >= _BATCH:
            evaluated.extend(_evaluate(engine, batch))
            batch = []
    evaluated.extend(_evaluate(engine, batch))
    return evaluated


def _evaluate(engine: PolicyEngine, batch: list[tuple[Flow, int]]) -> list[EvaluatedFlow]:
    if not batch:
        return []
    try:
        verdicts = engine.evaluate_many([flow for flow, _ in batch])
    except NotACalicoEndpointError:
        results: list[EvaluatedFlow] = []
        for flow, records in batch:
            try:
                verdict = engine.evaluate(flow)
            except NotACalicoEndpointError:
                continue
            results.append(EvaluatedFlow(flow, records, verdict.hits, verdict.staged_hits))
        return results
    return [
        EvaluatedFlow(flow, records, verdict.hits, verdict.staged_hits)
        for (flow, records), verdict in zip(batch, verdicts, strict=True)
    ]


def floor_bucket(moment: datetime) -> datetime:
    """The start of the 5-minute bucket holding ``moment``."""
    seconds = int(moment.timestamp())
    return datetime.fromtimestamp(seconds - seconds % stats_store.BUCKET_SECONDS, UTC)
