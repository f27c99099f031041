"""Running one job attempt: claim the row, keep it alive, publish its events, record how it ended.

:func:`run_job` is what every job task does around its body. The body receives a :class:`JobRun` and
calls :meth:`JobRun.checkpoint` between pieces of work: that writes the heartbeat and progress (at
most once per heartbeat interval) and raises :class:`JobCancelledError` once the job was cancelled,
or :class:`JobLostError` once another attempt took it over. Periodic tasks started by beat have no
job row; they get a :class:`JobRun` whose checkpoints and events go nowhere.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

import asyncpg
from celery.exceptions import SoftTimeLimitExceeded

from services.common.db import jobs
from services.common.pubsub import JobEvents

logger = logging.getLogger(__name__)

_FAILURE_MESSAGE_LIMIT: Final = 2000


class JobCancelledError(Exception):
    """The job was cancelled while it ran."""


class JobLostError(Exception):
    """Another attempt holds the job now (this one was presumed dead)."""


class JobBusyError(Exception):
    """Another attempt, still alive, holds the job: try again after ``retry_in``."""

    def __init__(self, retry_in: timedelta) -> None:
        super().__init__(f"the job is running elsewhere; retry in {retry_in}")
        self.retry_in = retry_in


@dataclass(slots=True)
class JobRun:
    """One attempt at a job, as its body sees it."""

    pool: asyncpg.Pool
    events: JobEvents | None
    job: jobs.Job | None
    lease: str | None
    heartbeat_interval: timedelta
    params: dict[str, Any] = field(default_factory=dict)
    _last_beat: float = 0.0

    @property
    def job_id(self) -> str | None:
        return None if self.job is None else self.job.id

    async def checkpoint(self, progress: float | None = None, *, force: bool = False) -> None:
        """Record progress (0..1) and a heartbeat if the interval elapsed; stop if cancelled or lost."""
        if self.job is None or self.lease is None:
            return
        now = time.monotonic()
        if not force and now - self._last_beat < self.heartbeat_interval.total_seconds():
            return
        self._last_beat = now
        if await jobs.heartbeat(self.pool, self.job.id, self.lease, progress):
            if progress is not None:
                event = {"type": "Job", "id": self.job.id, "kind": self.job.kind, "state": "running"}
                await self.publish({**event, "progress": min(max(progress, 0.0), 1.0)})
            return
        current = await jobs.get(self.pool, self.job.id)
        if current is not None and current.state is jobs.JobState.CANCELLED:
            raise JobCancelledError(self.job.id)
        raise JobLostError(self.job.id)

    async def publish(self, event: Mapping[str, Any], *, final: bool = False) -> None:
        """Publish an event of this job (nothing for a job-less periodic run)."""
        if self.events is not None and self.job is not None:
            await self.events.publish(self.job.id, event, final=final)

    async def publish_many(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Publish several events in order, in one round trip."""
        if self.events is not None and self.job is not None and events:
            await self.events.publish_many(self.job.id, events)


JobBody = Callable[[JobRun], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class JobPolicy:
    """Timing of job attempts (from the worker options)."""

    heartbeat_interval: timedelta
    stale_after: timedelta
    max_attempts: int


def worker_identity() -> str:
    """``<host>:<pid>`` of this process, as recorded on the jobs it holds."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_is_dead(worker: str | None) -> bool:
    """Whether the recorded holder is a process of this host that no longer exists (or is this one).

    This process runs one task at a time, so a job it holds while starting another is left over from
    an attempt that can no longer be running.
    """
    if not worker:
        return False
    host, _, pid_text = worker.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def run_job(
    pool: asyncpg.Pool, events: JobEvents, job_id: str, body: JobBody, policy: JobPolicy
) -> jobs.Job | None:
    """Claim job ``job_id``, run ``body`` and record the outcome; return the finished job (None if not run).

    Raises :class:`JobBusyError` when a live attempt holds the job, and re-raises transient errors
    (after giving the job back) so that the task retries.
    """
    async with pool.acquire() as conn:
        claim = await jobs.claim(
            conn,
            job_id,
            stale_after=policy.stale_after,
            max_attempts=policy.max_attempts,
            worker=worker_identity(),
            is_dead=holder_is_dead,
        )
    if claim.outcome is jobs.ClaimOutcome.BUSY:
        raise JobBusyError(policy.stale_after)
    if claim.outcome is jobs.ClaimOutcome.EXHAUSTED and claim.job is not None:
        await events.publish(job_id, claim.job.as_event(), final=True)
        return claim.job
    if claim.job is None or claim.lease is None:
        logger.info("job %s: nothing to do (%s)", job_id, claim.outcome.value)
        return None
    job, lease = claim.job, claim.lease
    run = JobRun(pool, events, job, lease, policy.heartbeat_interval, dict(job.params))
    await events.publish(job_id, job.as_event())
    try:
        result = await body(run)
    except JobCancelledError:
        logger.info("job %s cancelled", job_id)
        return await _publish_final(pool, events, job_id)
    except JobLostError:
        logger.warning("job %s was taken over by another attempt; this one stops", job_id)
        return None
    except SoftTimeLimitExceeded:
        return await _fail(pool, events, job_id, lease, "the job exceeded its time limit")
    except TRANSIENT_ERRORS as error:
        try:
            await jobs.release(pool, job_id, lease, f"retrying after {type(error).__name__}: {error}")
        except Exception:  # the database may be the thing that failed; the reaper or the retry recovers
            logger.warning("job %s: could not give the job back before retrying", job_id, exc_info=True)
        raise
    except Exception as error:
        logger.exception("job %s failed", job_id)
        return await _fail(pool, events, job_id, lease, _describe(error))
    finished = await jobs.finish(pool, job_id, lease, result)
    if finished is None:
        return await _publish_final(pool, events, job_id)
    await events.publish(job_id, finished.as_event(), final=True)
    return finished


async def _fail(pool: asyncpg.Pool, events: JobEvents, job_id: str, lease: str, message: str) -> jobs.Job | None:
    failed = await jobs.fail(pool, job_id, lease, message)
    if failed is None:
        return await _publish_final(pool, events, job_id)
    await events.publish(job_id, failed.as_event(), final=True)
    return failed


async def _publish_final(pool: asyncpg.Pool, events: JobEvents, job_id: str) -> jobs.Job | None:
    """Publish the job's final state as recorded (cancelled, or finished by another attempt)."""
    current = await jobs.get(pool, job_id)
    if current is not None and current.state.finished:
        await events.publish(job_id, current.as_event(), final=True)
    return current


def _describe(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return text[:_FAILURE_MESSAGE_LIMIT]


def _transient_errors() -> tuple[type[BaseException], ...]:
    import kombu.exceptions  # noqa: PLC0415 - kept local: only this tuple needs it
    import redis.exceptions  # noqa: PLC0415

    return (
        asyncpg.PostgresConnectionError,
        asyncpg.exceptions.CannotConnectNowError,
        asyncpg.exceptions.AdminShutdownError,
        asyncpg.exceptions.TooManyConnectionsError,
        asyncpg.exceptions.TransactionRollbackError,  # serialization failures and deadlocks
        ConnectionError,
        TimeoutError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        kombu.exceptions.OperationalError,
    )


TRANSIENT_ERRORS: Final = _transient_errors()
"""Errors worth retrying with backoff: the database, Redis or the broker was briefly unavailable."""
