"""SQL for ``jobs``: long-running work requested through the API and done by the workers.

Life of a job: the API :func:`create`\\ s the row (``queued``) and enqueues the task after its
transaction commits. A worker :func:`claim`\\ s it, which moves it to ``running``, counts an attempt and
hands out a *lease* (a fresh UUID): every later write of that attempt (:func:`heartbeat`,
:func:`finish`, :func:`fail`, :func:`release`) names the lease and is ignored once another attempt
took the job over, so an attempt that was presumed dead can never overwrite its successor's result.

A running job whose heartbeat stops is either taken over by the redelivered task (once the heartbeat
is older than ``stale_after``) or found by :func:`reap_stale`, which requeues it (the caller enqueues
it again) or, after ``max_attempts``, marks it failed. :func:`cancel` finishes a queued or running job
at once; the running attempt learns it on its next heartbeat and stops.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, TypeAlias

import asyncpg

Executor: TypeAlias = asyncpg.Connection | asyncpg.Pool


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class JobKind(StrEnum):
    """What a job computes; each kind is done by the Celery task named :attr:`task_name`."""

    RECOMMEND = "recommend"
    PREVIEW = "preview"
    STATISTICS = "statistics"
    RETENTION = "retention"

    @property
    def task_name(self) -> str:
        return f"ringfence.{self.value}"


DEFAULT_MAX_ATTEMPTS: Final = 3


@dataclass(frozen=True, slots=True)
class Job:
    """One row of ``jobs``."""

    id: str
    kind: str
    params: dict[str, Any]
    state: JobState
    progress: float
    error: str | None
    result: Any
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    attempts: int

    def as_event(self) -> dict[str, Any]:
        """The job as a JSON event (``type: "Job"``, the GraphQL type it maps onto)."""
        return {
            "type": "Job",
            "id": self.id,
            "kind": self.kind,
            "state": self.state.value,
            "progress": self.progress,
            "error": self.error,
            "result": self.result,
        }


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"  # this attempt runs the job
    BUSY = "busy"  # another attempt holds a fresh lease: try again later
    FINISHED = "finished"  # nothing to do (succeeded, failed or cancelled)
    EXHAUSTED = "exhausted"  # too many attempts: the job was marked failed
    MISSING = "missing"  # no such job


@dataclass(frozen=True, slots=True)
class Claim:
    """The result of :func:`claim`; ``lease`` and ``job`` are set when the job was claimed."""

    outcome: ClaimOutcome
    job: Job | None = None
    lease: str | None = None


INSERT_JOB: Final = """
INSERT INTO jobs (kind, params, requested_by) VALUES ($1, $2::jsonb, $3)
RETURNING id::text AS id, kind, params, state, progress, error, result, requested_by, created_at, started_at,
          finished_at, heartbeat_at, attempts
"""


async def create(conn: Executor, kind: str, params: Mapping[str, Any], requested_by: str) -> Job:
    """Insert a queued job; enqueue its task only after the surrounding transaction commits."""
    row = await conn.fetchrow(INSERT_JOB, kind, dict(params), requested_by)
    return _job(row)


SELECT_JOB: Final = """
SELECT id::text AS id, kind, params, state, progress, error, result, requested_by, created_at, started_at,
          finished_at, heartbeat_at, attempts
FROM jobs WHERE id = $1::uuid
"""


async def get(conn: Executor, job_id: str) -> Job | None:
    """The job ``job_id``, or None (also for a string that is not a UUID)."""
    if not _is_uuid(job_id):
        return None
    row = await conn.fetchrow(SELECT_JOB, job_id)
    return None if row is None else _job(row)


LOCK_JOB: Final = """
SELECT state, attempts, worker, heartbeat_at IS NULL OR heartbeat_at < now() - $2::interval AS stale
FROM jobs WHERE id = $1::uuid FOR UPDATE
"""

CLAIM_JOB: Final = """
UPDATE jobs SET state = 'running', attempts = attempts + 1, lease = $2::uuid, worker = $3,
                started_at = coalesce(started_at, now()), heartbeat_at = now()
WHERE id = $1::uuid
RETURNING id::text AS id, kind, params, state, progress, error, result, requested_by, created_at, started_at,
          finished_at, heartbeat_at, attempts
"""

FAIL_EXHAUSTED: Final = """
UPDATE jobs SET state = 'failed', finished_at = now(), lease = NULL, error = $2
WHERE id = $1::uuid
RETURNING id::text AS id, kind, params, state, progress, error, result, requested_by, created_at, started_at,
          finished_at, heartbeat_at, attempts
"""


async def claim(
    conn: asyncpg.Connection,
    job_id: str,
    *,
    stale_after: timedelta,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    worker: str | None = None,
    is_dead: Callable[[str | None], bool] | None = None,
) -> Claim:
    """Take the job for one attempt if it is queued, or running with a heartbeat older than ``stale_after``.

    ``worker`` names this attempt's process; ``is_dead``, given the recorded holder of a running job,
    may tell that it died (a process of this host that is gone), which makes the job claimable at
    once. A claimable job that already used ``max_attempts`` attempts is marked failed instead
    (``EXHAUSTED``).
    """
    if not _is_uuid(job_id):
        return Claim(ClaimOutcome.MISSING)
    async with conn.transaction():
        current = await conn.fetchrow(LOCK_JOB, job_id, stale_after)
        if current is None:
            return Claim(ClaimOutcome.MISSING)
        state = JobState(current["state"])
        if state.finished:
            return Claim(ClaimOutcome.FINISHED)
        holder_dead = is_dead is not None and is_dead(current["worker"])
        if state is JobState.RUNNING and not current["stale"] and not holder_dead:
            return Claim(ClaimOutcome.BUSY)
        if current["attempts"] >= max_attempts:
            failed = await conn.fetchrow(FAIL_EXHAUSTED, job_id, f"gave up after {current['attempts']} attempts")
            return Claim(ClaimOutcome.EXHAUSTED, _job(failed))
        lease = str(uuid.uuid4())
        row = await conn.fetchrow(CLAIM_JOB, job_id, lease, worker)
        return Claim(ClaimOutcome.CLAIMED, _job(row), lease)


HEARTBEAT: Final = """
UPDATE jobs SET heartbeat_at = now(), progress = coalesce($3, progress)
WHERE id = $1::uuid AND lease = $2::uuid AND state = 'running'
RETURNING state
"""


async def heartbeat(conn: Executor, job_id: str, lease: str, progress: float | None = None) -> bool:
    """Record a sign of life (and ``progress`` in 0..1); False when the attempt must stop.

    It must stop when the job was cancelled, finished, or taken over by another attempt.
    """
    value = None if progress is None else min(max(progress, 0.0), 1.0)
    row = await conn.fetchrow(HEARTBEAT, job_id, lease, value)
    return row is not None


FINISH: Final = """
UPDATE jobs SET state = $3, result = $4::jsonb, error = $5,
                progress = CASE WHEN $3 = 'succeeded' THEN 1 ELSE progress END,
                finished_at = now(), heartbeat_at = now(), lease = NULL
WHERE id = $1::uuid AND lease = $2::uuid AND state = 'running'
RETURNING id::text AS id, kind, params, state, progress, error, result, requested_by, created_at, started_at,
          finished_at, heartbeat_at, attempts
"""


async def finish(conn: Executor, job_id: str, lease: str, result: Any) -> Job | None:
    """Mark the job succeeded with ``result``; None when this attempt no longer holds it."""
    row = await conn.fetchrow(FINISH, job_id, lease, JobState.SUCCEEDED.value, result, None)
    return None if row is None else _job(row)


async def fail(conn: Executor, job_id: str, lease: str, error: str) -> Job | None:
    """Mark the job failed with ``error``; None when this attempt no longer holds it."""
    row = await conn.fetchrow(FINISH, job_id, lease, JobState.FAILED.value, None, error)
    return None if row is None else _job(row)


RELEASE: Final = """
UPDATE jobs SET state = 'queued', lease = NULL, heartbeat_at = NULL, error = $3, attempts = greatest(attempts - 1, 0)
WHERE id = $1::uuid AND lease = $2::uuid AND state = 'running'
RETURNING id::text AS id, kind, params, state, progress, error, result, requested_by, created_at, started_at,
          finished_at, heartbeat_at, attempts
"""


async def release(conn: Executor, job_id: str, lease: str, reason: str | None = None) -> Job | None:
    """Give the job back (queued) so that a retry of the task can claim it at once.

    The attempt does not count against ``max_attempts``: it ended on a transient error, which the
    task's own retry limit bounds, not on a lost worker.
    """
    row = await conn.fetchrow(RELEASE, job_id, lease, reason)
    return None if row is None else _job(row)


CANCEL: Final = """
UPDATE jobs SET state = 'cancelled', finished_at = now(), lease = NULL
WHERE id = $1::uuid AND state IN ('queued', 'running')
RETURNING id::text AS id, kind, params, state, progress, error, result, requested_by, created_at, started_at,
          finished_at, heartbeat_at, attempts
"""


async def cancel(conn: Executor, job_id: str) -> Job | None:
    """Cancel a queued or running job; None when it does not exist or has already finished."""
    if not _is_uuid(job_id):
        return None
    row = await conn.fetchrow(CANCEL, job_id)
    return None if row is None else _job(row)


REQUEUE_STALE: Final = """
UPDATE jobs SET state = 'queued', lease = NULL, heartbeat_at = NULL, error = 'worker lost; requeued'
WHERE state = 'running' AND attempts < $2 AND (heartbeat_at IS NULL OR heartbeat_at < now() - $1::interval)
RETURNING id::text AS id, kind, params, state, progress, error, result, requested_by, created_at, started_at,
          finished_at, heartbeat_at, attempts
"""

FAIL_STALE: Final = """
UPDATE jobs SET state = 'failed', finished_at = now(), lease = NULL,
                error = 'worker lost after ' || attempts || ' attempts'
WHERE state = 'running' AND attempts >= $2 AND (heartbeat_at IS NULL OR heartbeat_at < now() - $1::interval)
RETURNING id::text AS id, kind, params, state, progress, error, result, requested_by, created_at, started_at,
          finished_at, heartbeat_at, attempts
"""

# A queued job nobody claimed for a while: its enqueue was lost (the API died between commit and send).
FORGOTTEN: Final = """
SELECT id::text AS id, kind, params, state, progress, error, result, requested_by, created_at, started_at,
          finished_at, heartbeat_at, attempts FROM jobs
WHERE state = 'queued' AND coalesce(heartbeat_at, created_at) < now() - $1::interval
ORDER BY created_at
"""

TOUCH_QUEUED: Final = "UPDATE jobs SET heartbeat_at = now() WHERE id = ANY($1::uuid[]) AND state = 'queued'"


@dataclass(frozen=True, slots=True)
class Reaped:
    """What :func:`reap_stale` did: jobs to enqueue again, and jobs given up on."""

    requeued: list[Job]
    failed: list[Job]


async def reap_stale(
    conn: asyncpg.Connection, *, stale_after: timedelta, max_attempts: int = DEFAULT_MAX_ATTEMPTS
) -> Reaped:
    """Requeue running jobs whose heartbeat is older than ``stale_after`` (fail them after ``max_attempts``).

    Queued jobs left unclaimed for ``stale_after`` are returned with the requeued ones, so that the
    caller enqueues them again; each is stamped so it is not returned again before another period.
    """
    async with conn.transaction():
        failed = [_job(row) for row in await conn.fetch(FAIL_STALE, stale_after, max_attempts)]
        requeued = [_job(row) for row in await conn.fetch(REQUEUE_STALE, stale_after, max_attempts)]
        requeued_ids = {job.id for job in requeued}
        forgotten = [_job(row) for row in await conn.fetch(FORGOTTEN, stale_after)]
        forgotten = [job for job in forgotten if job.id not in requeued_ids]
        ids = [job.id for job in requeued + forgotten]
        if ids:
            await conn.execute(TOUCH_QUEUED, ids)
    return Reaped(requeued + forgotten, failed)


UNFINISHED: Final = """
SELECT kind, state, count(*) AS jobs, extract(epoch FROM now() - min(created_at))::float8 AS oldest_seconds
FROM jobs WHERE state IN ('queued', 'running') GROUP BY kind, state ORDER BY kind, state
"""


@dataclass(frozen=True, slots=True)
class UnfinishedJobs:
    """The jobs of one kind in one unfinished state: how many, and how long ago the oldest was created."""

    kind: str
    state: JobState
    count: int
    oldest_seconds: float


async def unfinished(conn: Executor) -> list[UnfinishedJobs]:
    """The queued and running jobs by kind and state (read through the partial index of unfinished jobs)."""
    rows = await conn.fetch(UNFINISHED)
    return [
        UnfinishedJobs(row["kind"], JobState(row["state"]), row["jobs"], max(0.0, row["oldest_seconds"]))
        for row in rows
    ]


DELETE_FINISHED: Final = "DELETE FROM jobs WHERE finished_at < now() - $1::interval"


async def delete_finished(conn: Executor, older_than: timedelta) -> int:
    """Delete jobs that finished more than ``older_than`` ago; return how many."""
    status: str = await conn.execute(DELETE_FINISHED, older_than)
    return int(status.rsplit(" ", 1)[-1])


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


def _job(row: asyncpg.Record) -> Job:
    return Job(
        id=str(row["id"]),
        kind=row["kind"],
        params=row["params"] or {},
        state=JobState(row["state"]),
        progress=float(row["progress"]),
        error=row["error"],
        result=row["result"],
        requested_by=row["requested_by"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        heartbeat_at=row["heartbeat_at"],
        attempts=row["attempts"],
    )
