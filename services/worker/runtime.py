"""What one worker process keeps between tasks: an event loop, one asyncpg pool and one Redis client.

Celery tasks are plain functions; the Ringfence code they call is asyncio. Each worker process (a
prefork child, or the main process with the solo pool) builds its runtime on first use and runs every
task's coroutine on that one loop, so the pool's connections are reused across tasks. A runtime built
before a fork is never used by the child: it is keyed by process id.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg
from celery import Celery
from celery.signals import worker_process_shutdown, worker_shutdown
from redis.asyncio import Redis

from services.common.db import create_pool
from services.common.pubsub import JobEvents
from services.common.settings import Settings

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class WorkerRuntime:
    """The per-process resources of the tasks."""

    def __init__(self, settings: Settings, *, pool_size: int) -> None:
        if settings.database_url is None:
            msg = "the worker needs a database: set RINGFENCE_DATABASE_URL"
            raise ValueError(msg)
        self.settings = settings
        self.pid = os.getpid()
        self.identity = f"{socket.gethostname()}:{self.pid}"
        self.loop = asyncio.new_event_loop()
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._redis: Redis | None = None
        self._events: JobEvents | None = None

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` to completion on this process's loop."""
        return self.loop.run_until_complete(coroutine)

    async def pool(self) -> asyncpg.Pool:
        """The process's database pool, opened on first use (and again after a failed open)."""
        if self._pool is None:
            assert self.settings.database_url is not None
            self._pool = await create_pool(self.settings.database_url, min_size=1, max_size=self._pool_size)
        return self._pool

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            url = self.settings.redis_url or self.settings.broker_url
            if url is None or not url.startswith(("redis://", "rediss://", "unix://")):
                msg = "job events need Redis: set RINGFENCE_REDIS_URL"
                raise ValueError(msg)
            self._redis = Redis.from_url(url)
        return self._redis

    @property
    def events(self) -> JobEvents:
        if self._events is None:
            self._events = JobEvents(self.redis)
        return self._events

    def close(self) -> None:
        """Close the pool, the Redis client and the loop."""
        try:
            if self._pool is not None:
                self.run(self._pool.close())
            if self._redis is not None:
                self.run(self._redis.aclose())
        except Exception:
            logger.exception("closing the worker runtime failed")
        finally:
            self._pool = None
            self._redis = None
            self.loop.close()


_RUNTIMES: dict[int, WorkerRuntime] = {}


def runtime_for(app: Celery) -> WorkerRuntime:
    """This process's runtime for ``app`` (built on first use)."""
    pid = os.getpid()
    current = _RUNTIMES.get(pid)
    if current is None:
        _RUNTIMES.clear()  # runtimes inherited through fork belong to the parent
        current = WorkerRuntime(app.ringfence_settings, pool_size=app.ringfence_options.pool_size)
        _RUNTIMES[pid] = current
    return current


def close_runtime(**_: object) -> None:
    """Close this process's runtime (at process or worker shutdown)."""
    current = _RUNTIMES.pop(os.getpid(), None)
    if current is not None:
        current.close()


worker_process_shutdown.connect(close_runtime, weak=False)
worker_shutdown.connect(close_runtime, weak=False)
