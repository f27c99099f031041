"""The Celery tasks: thin shells that run a job body on the process's runtime.

Job tasks take the id of a ``jobs`` row and nothing else, so a task is idempotent: running it twice
finds the job claimed, running or finished and does nothing (see ``jobrun.py``).

| task | does |
| --- | --- |
| ``ringfence.recommend(job_id)`` | recommend a staged policy for a namespace or workload, then refresh statistics |
| ``ringfence.preview(job_id)`` | impact preview of a change set over the stored flows |
| ``ringfence.statistics(job_id=None)`` | policy statistics by evaluation (beat: the last day) |
| ``ringfence.retention(job_id=None)`` | drop flows, statistics and jobs past retention |
| ``ringfence.recommend_continuous()`` | beat: refine learning recommendations, add scoped ones |
| ``ringfence.reap_jobs()`` | beat: requeue or fail jobs whose worker died |
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

from celery import Celery, Task

from services.common.db import jobs
from services.common.db.jobs import JobKind
from services.worker.jobrun import TRANSIENT_ERRORS, JobBusyError, JobPolicy, JobRun, run_job
from services.worker.maintenance import reap_jobs, run_retention
from services.worker.preview import run_preview
from services.worker.recommendations import run_continuous, run_recommend
from services.worker.runtime import WorkerRuntime, runtime_for
from services.worker.statistics import run_statistics

logger = logging.getLogger(__name__)

Body = Callable[[JobRun], Awaitable[Any]]

REAP_TIME_LIMIT: Final = 60.0
KNOWN_KINDS: Final = frozenset(kind.value for kind in JobKind)


def _now() -> datetime:
    return datetime.now(UTC)


def register(app: Celery) -> None:
    """Register every Ringfence task on ``app`` (called by ``create_app``)."""
    settings = app.ringfence_settings

    @app.task(name=JobKind.RECOMMEND.task_name, bind=True)
    def recommend(self: Task, job_id: str) -> None:
        run_job_task(self, job_id, lambda run: run_recommend(run, now=_now()))
        # A recommendation writes a staged policy: refresh its statistics now rather than at the next beat,
        # so the board shows what it would have hit as soon as it exists.
        self.app.send_task(JobKind.STATISTICS.task_name)

    @app.task(name=JobKind.PREVIEW.task_name, bind=True)
    def preview(self: Task, job_id: str) -> None:
        run_job_task(self, job_id, run_preview)

    @app.task(name=JobKind.STATISTICS.task_name, bind=True)
    def statistics(self: Task, job_id: str | None = None) -> None:
        run_job_task(self, job_id, lambda run: run_statistics(run, now=_now()))

    @app.task(name=JobKind.RETENTION.task_name, bind=True)
    def retention(self: Task, job_id: str | None = None) -> None:
        days = settings.retention_days
        run_job_task(self, job_id, lambda run: run_retention(run, now=_now(), retention_days=days))

    @app.task(name="ringfence.recommend_continuous", bind=True)
    def recommend_continuous(self: Task) -> None:
        run_job_task(self, None, lambda run: run_continuous(run, now=_now()))

    @app.task(name="ringfence.reap_jobs", bind=True, soft_time_limit=REAP_TIME_LIMIT, time_limit=2 * REAP_TIME_LIMIT)
    def reap(self: Task) -> dict[str, Any]:
        runtime = runtime_for(self.app)
        options = self.app.ringfence_options

        def enqueue(job: jobs.Job) -> None:
            if job.kind not in KNOWN_KINDS:
                logger.error("job %s has unknown kind %r: not enqueued", job.id, job.kind)
                return
            self.app.send_task(JobKind(job.kind).task_name, args=[job.id])

        async def body() -> dict[str, Any]:
            return await reap_jobs(
                await runtime.pool(),
                runtime.events,
                enqueue,
                stale_after=options.stale_after,
                max_attempts=options.max_attempts,
            )

        return runtime.run(body())


def run_job_task(task: Task, job_id: str | None, body: Body) -> None:
    """Run ``body`` for job ``job_id`` (or job-less, for beat) with retries on transient errors."""
    runtime = runtime_for(task.app)
    options = task.app.ringfence_options
    try:
        if job_id is None:
            runtime.run(_run_without_job(runtime, body, options.heartbeat_interval))
            return
        policy = JobPolicy(options.heartbeat_interval, options.stale_after, options.max_attempts)
        runtime.run(_run_with_job(runtime, job_id, body, policy))
    except JobBusyError as busy:
        # A live attempt holds the job: come back once it should have finished or gone stale.
        cap = int(options.time_limit / options.stale_after) + 3
        raise task.retry(countdown=busy.retry_in.total_seconds(), max_retries=cap) from None
    except TRANSIENT_ERRORS as error:
        if job_id is None:
            logger.warning("%s failed on a transient error; the next run will catch up: %s", task.name, error)
            return
        retries = task.request.retries
        countdown = min(2.0**retries, options.retry_backoff_max.total_seconds()) * (0.5 + random.random())  # noqa: S311
        logger.warning("job %s: transient %s, retry %d in %.1f s", job_id, type(error).__name__, retries + 1, countdown)
        raise task.retry(exc=error, countdown=countdown, max_retries=options.max_retries) from None


async def _run_with_job(runtime: WorkerRuntime, job_id: str, body: Body, policy: JobPolicy) -> None:
    await run_job(await runtime.pool(), runtime.events, job_id, body, policy)


async def _run_without_job(runtime: WorkerRuntime, body: Body, heartbeat_interval: Any) -> None:
    run = JobRun(await runtime.pool(), None, None, None, heartbeat_interval)
    result = await body(run)
    logger.info("periodic run done: %s", result)
