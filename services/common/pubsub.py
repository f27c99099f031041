"""Job events over Redis: published by the workers on ``ringfence:job:<id>``, read by the API replicas.

Each event is a JSON object with a ``type`` discriminator naming the GraphQL type it maps onto
(``Job``, ``ImpactProgress``, ``ImpactedFlow``, ``ImpactSummary``), a per-job sequence number ``seq``
and, on the last event of a job, ``"final": true``.

Pub/sub delivers only to those listening, so every event is also appended to a short-lived backlog
list (``ringfence:job:<id>:events``). :func:`subscribe` listens first, then replays the backlog, then
follows the channel, so a subscriber that arrives after the job started misses nothing. A job that
was retried after its worker died publishes its events again: the subscriber drops progress that
goes backwards and changed flows it has already yielded (same ``key``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Final

import orjson
from redis.asyncio import Redis

CHANNEL_PREFIX: Final = "ringfence:job:"
BACKLOG_SUFFIX: Final = ":events"
SEQUENCE_SUFFIX: Final = ":seq"
BACKLOG_TTL_SECONDS: Final = 3600
BACKLOG_LIMIT: Final = 100_000


def channel(job_id: str) -> str:
    """The pub/sub channel of job ``job_id``."""
    return f"{CHANNEL_PREFIX}{job_id}"


def backlog_key(job_id: str) -> str:
    """The list that keeps the events of job ``job_id`` for late subscribers."""
    return channel(job_id) + BACKLOG_SUFFIX


def _sequence_key(job_id: str) -> str:
    return channel(job_id) + SEQUENCE_SUFFIX


# Numbering, backlog and publication in one atomic step, so the backlog order is the channel order.
_PUBLISH_SCRIPT: Final = """
local seq = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
local event = string.gsub(ARGV[1], '^{', '{"seq":' .. seq .. ',', 1)
redis.call('RPUSH', KEYS[1], event)
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[4]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[2], event)
return seq
"""


_PUBLISH_MANY_SCRIPT: Final = """
local seq = 0
for i = 5, #ARGV do
    seq = redis.call('INCR', KEYS[2])
    local event = string.gsub(ARGV[i], '^{', '{"seq":' .. seq .. ',', 1)
    redis.call('RPUSH', KEYS[1], event)
    redis.call('PUBLISH', ARGV[1], event)
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[3]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return seq
"""


class JobEvents:
    """Publishes the events of jobs; one instance per process, sharing its Redis client."""

    def __init__(self, redis: Redis, *, ttl_seconds: int = BACKLOG_TTL_SECONDS) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._script = redis.register_script(_PUBLISH_SCRIPT)
        self._many = redis.register_script(_PUBLISH_MANY_SCRIPT)

    async def publish(self, job_id: str, event: Mapping[str, Any], *, final: bool = False) -> int:
        """Publish ``event`` (it must have a ``type``) for job ``job_id``; return its sequence number."""
        if "type" not in event:
            msg = "a job event needs a 'type'"
            raise ValueError(msg)
        body = dict(event)
        body.pop("seq", None)
        if final:
            body["final"] = True
        payload = orjson.dumps(body).decode()
        seq: int = await self._script(
            keys=[backlog_key(job_id), _sequence_key(job_id)],
            args=[payload, channel(job_id), self._ttl, BACKLOG_LIMIT],
        )
        return seq

    async def publish_many(self, job_id: str, events: Sequence[Mapping[str, Any]]) -> int:
        """Publish several events in order in one round trip; return the last sequence number (0 for none)."""
        if not events:
            return 0
        payloads = []
        for event in events:
            if "type" not in event:
                msg = "a job event needs a 'type'"
                raise ValueError(msg)
            body = {key: value for key, value in event.items() if key != "seq"}
            payloads.append(orjson.dumps(body).decode())
        seq: int = await self._many(
            keys=[backlog_key(job_id), _sequence_key(job_id)],
            args=[channel(job_id), self._ttl, BACKLOG_LIMIT, "", *payloads],
        )
        return seq


async def subscribe(redis: Redis, job_id: str, *, idle_timeout: float | None = None) -> AsyncIterator[dict[str, Any]]:
    """Yield the events of job ``job_id`` in order, backlog first, until the final one.

    ``idle_timeout`` ends the stream (raising :class:`TimeoutError`) when nothing arrives for that long.
    Retried attempts' repeats are filtered (see the module docstring).
    """
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel(job_id))
    try:
        seen = _Deduplicator()
        last_seq = 0
        for raw in await redis.lrange(backlog_key(job_id), 0, -1):
            event = orjson.loads(raw)
            last_seq = event.get("seq", last_seq)
            if seen.fresh(event):
                yield event
            if event.get("final"):
                return
        while True:
            message = await _next_message(pubsub, idle_timeout)
            event = orjson.loads(message["data"])
            if event.get("seq", 0) <= last_seq:
                continue  # already replayed from the backlog
            last_seq = event["seq"]
            if seen.fresh(event):
                yield event
            if event.get("final"):
                return
    finally:
        with contextlib.suppress(Exception):
            await pubsub.unsubscribe()
        await pubsub.aclose()


async def _next_message(pubsub: Any, idle_timeout: float | None) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = None if idle_timeout is None else loop.time() + idle_timeout
    while True:
        wait = 1.0 if deadline is None else max(min(deadline - loop.time(), 1.0), 0.0)
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
        if message is not None and message.get("type") == "message":
            return dict(message)
        if deadline is not None and loop.time() >= deadline:
            msg = f"no job event for {idle_timeout} s"
            raise TimeoutError(msg)


class _Deduplicator:
    """Drops the events a retried attempt repeats: earlier progress and changed flows already seen."""

    def __init__(self) -> None:
        self._flows: set[str] = set()
        self._processed = -1

    def fresh(self, event: Mapping[str, Any]) -> bool:
        kind = event.get("type")
        if kind == "ImpactProgress":
            processed = int(event.get("processed", 0))
            if processed <= self._processed:
                return False
            self._processed = processed
            return True
        if kind == "ImpactedFlow" and "key" in event:
            key = str(event["key"])
            if key in self._flows:
                return False
            self._flows.add(key)
        return True
