"""Enqueueing worker tasks by name: the API never imports the worker, it only knows task names.

Tasks are sent after the transaction that created their job row has committed, so a worker never
picks up a job it cannot read yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from celery import Celery


class TaskQueue(Protocol):
    """Something that sends a task by name (a Celery client in production)."""

    async def send(self, name: str, args: Sequence[Any]) -> None: ...

    async def ping(self) -> None:
        """Raise when the broker cannot be reached."""
        ...

    def close(self) -> None: ...


class CeleryTaskQueue:
    """Sends tasks through a Celery client on ``broker_url``; the blocking send runs in a thread."""

    def __init__(self, broker_url: str, *, queue: str | None = None) -> None:
        self._app = Celery("ringfence-api", broker=broker_url, set_as_current=False)
        self._app.conf.update(
            task_serializer="json",
            accept_content=["json"],
            broker_connection_retry_on_startup=True,
            broker_transport_options={"max_retries": 3},
        )
        self._queue = queue

    async def send(self, name: str, args: Sequence[Any]) -> None:
        options: dict[str, Any] = {} if self._queue is None else {"queue": self._queue}
        await asyncio.to_thread(self._app.send_task, name, args=list(args), **options)

    async def ping(self) -> None:
        def connect() -> None:
            with self._app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)

        await asyncio.to_thread(connect)

    def close(self) -> None:
        self._app.close()
