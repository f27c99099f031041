"""Newly stored flows over Redis pub/sub: published by the collectors, followed by the API's ``flowTail``.

After a batch commits, a collector publishes its flows on :data:`CHANNEL` as JSON messages
``{"type": "FlowBatch", "flows": [...]}`` (at most :data:`MESSAGE_FLOWS` flows each). Each flow is
spelled as the GraphQL ``Flow`` type (camelCase, like the workers' job events) plus ``hits``: the
``[namespace, policy name]`` of every hit of either trace, as the flow store's ``policy`` filter
reads them.

This is a live tail, not a log: pub/sub delivers to those listening, nothing is kept for later, and a
collector that finds nobody listening does not even encode its batch. Publishing never holds up
ingestion: it is bounded in time and its failures are logged, not raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from redis.asyncio import Redis

from services.common.db.flows import STAGE_COLUMNS, StageRow, TraceSet

logger = logging.getLogger(__name__)

CHANNEL: Final = "ringfence:flows"
MESSAGE_FLOWS: Final = 500
"""Flows per message: a batch of thousands goes out as several messages of bounded size."""
PUBLISH_TIMEOUT_SECONDS: Final = 2.0

_COLUMN: Final = {name: index for index, name in enumerate(STAGE_COLUMNS)}


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def flow_event(
    row: StageRow, label_sets: Mapping[int, Sequence[str]], trace_sets: Mapping[int, TraceSet]
) -> dict[str, Any]:
    """One staging row as the GraphQL ``Flow`` spells it, plus ``hits`` for policy filters."""
    c = _COLUMN
    trace = trace_sets.get(row[c["trace_set"]]) if row[c["trace_set"]] is not None else None
    src_labels, dst_labels = row[c["src_labels"]], row[c["dst_labels"]]
    return {
        "startTime": _iso(row[c["start_s"]]),
        "endTime": _iso(row[c["end_s"]]),
        "reporter": row[c["reporter"]],
        "action": row[c["action"]],
        "proto": row[c["proto"]],
        "destPort": row[c["dst_port"]],
        "sourceType": row[c["src_type"]],
        "sourceNamespace": row[c["src_namespace"]],
        "sourceName": row[c["src_name"]],
        "sourceNameAggr": row[c["src_name_aggr"]],
        "sourceIp": row[c["src_ip"]],
        "sourceLabels": list(label_sets.get(src_labels, ())) if src_labels is not None else [],
        "destType": row[c["dst_type"]],
        "destNamespace": row[c["dst_namespace"]],
        "destName": row[c["dst_name"]],
        "destNameAggr": row[c["dst_name_aggr"]],
        "destIp": row[c["dst_ip"]],
        "destLabels": list(label_sets.get(dst_labels, ())) if dst_labels is not None else [],
        "destDomains": list(row[c["dst_domains"]] or ()),
        "destServiceNamespace": row[c["dst_service_namespace"]],
        "destServiceName": row[c["dst_service_name"]],
        "numFlows": row[c["num_flows"]],
        "packetsIn": row[c["packets_in"]],
        "packetsOut": row[c["packets_out"]],
        "bytesIn": row[c["bytes_in"]],
        "bytesOut": row[c["bytes_out"]],
        "policies": list(trace.enforced) if trace else [],
        "pendingPolicies": list(trace.pending) if trace else [],
        "hits": sorted({(hit[4], hit[5]) for hit in trace.hits}, key=str) if trace else [],
    }


class FlowTailPublisher:
    """Publishes stored batches on :data:`CHANNEL`; one per collector process."""

    def __init__(self, redis: Redis, *, channel: str = CHANNEL, timeout: float = PUBLISH_TIMEOUT_SECONDS) -> None:
        self._redis = redis
        self.channel = channel
        self._timeout = timeout
        self.published = 0
        """Flows published since start (for tests and logs)."""
        self._failing = False

    async def publish(
        self,
        rows: Sequence[StageRow],
        label_sets: Mapping[int, Sequence[str]],
        trace_sets: Mapping[int, TraceSet],
    ) -> int:
        """Publish the flows of a committed batch; return how many were sent (0: nobody listens, or failure)."""
        if not rows:
            return 0
        try:
            async with asyncio.timeout(self._timeout):
                listening = await self._redis.pubsub_numsub(self.channel)
                if not listening or not listening[0][1]:
                    return 0
                for first in range(0, len(rows), MESSAGE_FLOWS):
                    flows = [flow_event(row, label_sets, trace_sets) for row in rows[first : first + MESSAGE_FLOWS]]
                    await self._redis.publish(self.channel, orjson.dumps({"type": "FlowBatch", "flows": flows}))
        except Exception as error:  # noqa: BLE001 - the tail is best effort; ingestion goes on regardless
            if not self._failing:
                logger.warning("could not publish stored flows on %s: %s", self.channel, error)
            self._failing = True
            return 0
        if self._failing:
            logger.info("publishing stored flows on %s again", self.channel)
        self._failing = False
        self.published += len(rows)
        return len(rows)


async def follow(redis: Redis, *, channel: str = CHANNEL) -> AsyncIterator[list[dict[str, Any]]]:
    """Yield the flows of each message published from now on, batch by batch, for ever."""
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel)
    try:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None or message.get("type") != "message":
                continue
            body = orjson.loads(message["data"])
            if body.get("type") == "FlowBatch":
                yield list(body.get("flows") or [])
    finally:
        with contextlib.suppress(Exception):
            await pubsub.unsubscribe()
        await pubsub.aclose()
