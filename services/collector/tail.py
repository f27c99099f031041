"""The collector's side of the live flow tail: publish each committed batch's flows on Redis.

Optional: without a Redis URL the collector publishes nothing. A batch some of whose rows the
database refused (stored row by row) is not published, since which rows went in is not known here.
"""

from __future__ import annotations

from redis.asyncio import Redis

from services.collector.parse import ParsedChunk
from services.collector.pipeline import CommitHook
from services.collector.store import WriteResult
from services.common.flow_tail import FlowTailPublisher


def publishing_hook(publisher: FlowTailPublisher) -> CommitHook:
    """A pipeline ``on_commit`` hook that publishes the batch's flows through ``publisher``."""

    async def publish(chunk: ParsedChunk, result: WriteResult) -> None:
        if result.outcome.accepted == chunk.accepted:
            encoded = chunk.encoded
            await publisher.publish(encoded.rows, encoded.label_sets, encoded.trace_sets)

    return publish


class FlowTail:
    """The publishing hook for ``redis_url`` (``hook`` is None without one); close it on the way out."""

    def __init__(self, redis_url: str | None) -> None:
        # No connection is made here: the client connects on first use, so a Redis that is away
        # costs the collector nothing but a logged warning per outage.
        self._redis = (
            None if redis_url is None else Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
        )
        self.hook: CommitHook | None = None if self._redis is None else publishing_hook(FlowTailPublisher(self._redis))

    async def aclose(self) -> None:
        """Close the Redis client."""
        if self._redis is not None:
            await self._redis.aclose()
