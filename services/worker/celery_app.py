"""The Celery application of the workers, configured from :class:`~services.common.settings.Settings`.

Reliability choices (the broker is a queue, PostgreSQL is the record):

- JSON only, results ignored: a task's outcome lives in its ``jobs`` row.
- ``acks_late`` with ``reject_on_worker_lost``: a task is acknowledged after it ran, and one whose
  worker process died is delivered again; a prefetch of one keeps a busy worker from hoarding tasks.
  The job row's lease makes the redelivery safe (see ``services.common.db.jobs``).
- Soft and hard time limits per task; transient database or broker errors retry with exponential
  backoff (``tasks.py``), other errors fail the job at once.
- Redis as broker redelivers an unacknowledged task after ``visibility_timeout``, which must exceed
  the longest task; RabbitMQ (``amqp://``) needs nothing of the kind.
- With ``alive_file`` set, the worker's main loop touches that file every ``alive_every``
  (:class:`AliveFile`), and an embedded beat touches ``<alive_file>.beat`` on every tick of its
  scheduler (:class:`AliveScheduler`): a liveness probe that finds either stale restarts a worker or
  a beat that is stuck, which a process serving no HTTP could not otherwise show.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from celery import Celery, bootsteps
from celery.beat import PersistentScheduler

from services.common.settings import Settings

DEFAULT_QUEUE: Final = "celery"
"""Celery's default queue, where the API's client sends tasks unless told otherwise."""


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Knobs of the worker runtime that are not deployment settings (tests shorten the periods)."""

    queue: str = DEFAULT_QUEUE
    heartbeat_interval: timedelta = timedelta(seconds=2)
    stale_after: timedelta = timedelta(seconds=30)
    max_attempts: int = 3
    visibility_timeout: timedelta = timedelta(hours=2)
    soft_time_limit: timedelta = timedelta(minutes=55)
    time_limit: timedelta = timedelta(minutes=60)
    max_retries: int = 5
    retry_backoff_max: timedelta = timedelta(minutes=2)
    pool_size: int = 4
    recommend_every: timedelta = timedelta(seconds=150)
    statistics_every: timedelta = timedelta(minutes=1)
    reap_every: timedelta = timedelta(seconds=30)
    retention_every: timedelta = timedelta(hours=6)
    alive_file: Path | None = None
    alive_every: timedelta = timedelta(seconds=10)
    extra_conf: dict[str, Any] = field(default_factory=dict)


def create_app(settings: Settings, options: WorkerOptions | None = None) -> Celery:
    """A Celery app for ``settings`` with the Ringfence tasks registered and the beat schedule set."""
    broker_url = settings.broker_url or settings.redis_url
    if broker_url is None:
        msg = "no broker: set RINGFENCE_BROKER_URL or RINGFENCE_REDIS_URL"
        raise ValueError(msg)
    options = options or WorkerOptions()
    app = Celery("ringfence", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=options.soft_time_limit.total_seconds(),
        task_time_limit=options.time_limit.total_seconds(),
        task_default_queue=options.queue,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": int(options.visibility_timeout.total_seconds())},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
        timezone="UTC",
        beat_schedule=beat_schedule(options),
    )
    app.conf.update(options.extra_conf)
    app.ringfence_settings = settings
    app.ringfence_options = options
    if options.alive_file is not None:
        app.steps["worker"].add(AliveFile)
        app.conf.beat_scheduler = f"{__name__}:AliveScheduler"
    # Imported here: the task module registers its tasks on whichever app is being configured.
    from services.worker import tasks  # noqa: PLC0415

    tasks.register(app)
    return app


class AliveFile(bootsteps.StartStopStep):
    """Touches ``alive_file`` from the worker's timer every ``alive_every``, and removes it when the worker stops.

    With the prefork pool the timer is driven by the worker's event loop, the loop that takes tasks off
    the broker: when that loop hangs, the file goes stale.
    """

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        options: WorkerOptions = worker.app.ringfence_options
        assert options.alive_file is not None
        self.path = options.alive_file
        self.every = options.alive_every.total_seconds()
        self.timer_entry: Any = None

    def start(self, worker: Any) -> None:
        self.touch()
        self.timer_entry = worker.timer.call_repeatedly(self.every, self.touch)

    def stop(self, worker: Any) -> None:  # noqa: ARG002 - bootstep signature
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def touch(self) -> None:
        """Mark the worker alive now."""
        self.path.touch()


def beat_alive_file(alive_file: Path) -> Path:
    """The file an embedded beat touches on each tick, beside the worker's ``alive_file``."""
    return alive_file.with_name(alive_file.name + ".beat")


class AliveScheduler(PersistentScheduler):
    """Celery's persistent scheduler that also touches :func:`beat_alive_file` on every tick.

    A tick comes at least every time a periodic task is due (every 30 s by default: the job reaper),
    so a file older than a few minutes means the scheduler no longer runs.
    """

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Send the tasks that are due, then mark the scheduler alive."""
        interval: float = super().tick(*args, **kwargs)
        self._alive().touch()
        return interval

    def close(self) -> None:
        """Close the schedule's store and remove the alive file."""
        try:
            super().close()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self._alive().unlink()

    def _alive(self) -> Path:
        alive_file: Path | None = self.app.ringfence_options.alive_file
        assert alive_file is not None  # set as the scheduler only with an alive file
        return beat_alive_file(alive_file)


def beat_schedule(options: WorkerOptions) -> dict[str, dict[str, Any]]:
    """The periodic tasks: continuous recommendations, statistics rollups, job reaping, retention."""
    return {
        "recommendations": {"task": "ringfence.recommend_continuous", "schedule": options.recommend_every},
        "statistics": {"task": "ringfence.statistics", "schedule": options.statistics_every},
        "reap-jobs": {"task": "ringfence.reap_jobs", "schedule": options.reap_every},
        "retention": {"task": "ringfence.retention", "schedule": options.retention_every},
    }


_DEFAULT_APP: dict[str, Celery] = {}


def __getattr__(name: str) -> Any:
    """``celery -A services.worker.celery_app`` finds ``app`` here, built from the environment on first use."""
    if name not in ("app", "celery"):
        raise AttributeError(name)
    if "app" not in _DEFAULT_APP:
        _DEFAULT_APP["app"] = create_app(Settings.from_env(os.environ))
    return _DEFAULT_APP["app"]
