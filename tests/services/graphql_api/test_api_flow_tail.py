"""flowTail over a real WebSocket: flows stored through the collector's write path, published on Redis.

Each subscription must yield exactly the flows that ``flows`` returns for the same filter over the same
stored batch, so the tail's in-memory filter is checked against the store's SQL one.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from test_api_subscriptions import receive, send, session

from services.collector.lines import RawBatch
from services.collector.pipeline import ParseMode, Parser, Pipeline
from services.collector.store import FlowWriter
from services.collector.tail import publishing_hook
from services.common import flow_tail
from services.common.flow_tail import FlowTailPublisher

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the worker tests' harness
from worker_harness import WORKLOADS, pod_side, recent_start, record

FIELDS = "startTime reporter action proto destPort sourceNamespace sourceNameAggr destNamespace destNameAggr policies"
TAIL = f"subscription($f: FlowFilter) {{ flowTail(filter: $f) {{ {FIELDS} }} }}"
FLOWS = f"query($f: FlowFilter) {{ flows(filter: $f, first: 500) {{ edges {{ node {{ {FIELDS} }} }} }} }}"
BAD_ACTORS = "0|security|security.known-bad-actors|deny|0"


def tail_records(namespace: str, start: int) -> list[dict[str, Any]]:
    """Allowed and denied traffic of ``namespace``, plus traffic of another namespace the filters must drop."""
    pairs = [("frontend", "backend", 8080), ("backend", "logging", 9200), ("frontend", "logging", 9200)]
    records = [
        record(pod_side("source", app, namespace), pod_side("dest", dest, namespace), port, start=start, reporter=rep)
        for app, dest, port in pairs
        for rep in ("src", "dst")
    ]
    records.append(
        record(
            pod_side("source", "backend", namespace),
            pod_side("dest", "coredns", "kube-system"),
            53,
            start=start,
            proto="udp",
        )
    )
    records.append(
        record(
            pod_side("source", "frontend", namespace),
            pod_side("dest", "backend", namespace),
            22,
            start=start,
            action="deny",
            enforced=[BAD_ACTORS],
        )
    )
    other = f"{namespace}-other"
    records.append(
        record(
            pod_side("source", "frontend", other),
            pod_side("dest", "backend", other),
            8080,
            start=start,
            action="deny",
            enforced=[BAD_ACTORS],
        )
    )
    return records


async def store_published(pool, redis_url: str, records: list[dict[str, Any]]) -> int:
    """Store ``records`` as the collector does, publishing the committed batch; return flows published."""
    redis = Redis.from_url(redis_url)
    publisher = FlowTailPublisher(redis)

    def clock() -> datetime:
        return datetime.now(UTC)

    try:
        with Parser(ParseMode.INLINE) as parser:
            pipeline = Pipeline(
                FlowWriter(pool, clock=clock),
                parser,
                clock=clock,
                retention_days=30,
                on_commit=publishing_hook(publisher),
            )
            lines = [orjson.dumps(item) for item in records]
            offsets = [sum(len(line) + 1 for line in lines[:index]) for index in range(len(lines))]
            raw = RawBatch(f"tail-{secrets.token_hex(4)}", lines, offsets, 1)
            result = await pipeline.store(raw, await pipeline.parse(raw))
            assert result.outcome.rejected == 0, result.outcome.errors
    finally:
        await redis.aclose()
    return publisher.published


def key(flow: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(orjson.dumps(flow[name]) for name in FIELDS.split())


async def listeners(redis: Redis) -> int:
    return int((await redis.pubsub_numsub(flow_tail.CHANNEL))[0][1])


async def test_each_tail_yields_the_flows_that_flows_returns_for_its_filter(api, redis):
    namespace = f"tail-{secrets.token_hex(3)}"
    filters = [
        {"namespace": namespace},
        {"namespace": namespace, "action": "deny"},
        {"namespace": namespace, "workload": WORKLOADS["backend"], "reporter": "src"},
        {"namespace": namespace, "destPort": 53, "proto": "udp"},
        {"policy": "security.known-bad-actors", "namespace": namespace},
    ]
    before = await listeners(redis)
    async with session(api, role="viewer") as ws:
        for number, flow_filter in enumerate(filters):
            payload = {"query": TAIL, "variables": {"f": flow_filter}}
            await send(ws, {"id": str(number), "type": "subscribe", "payload": payload})
        await api.wait_for(lambda: _more(redis, before + len(filters)))
        records = tail_records(namespace, recent_start(10))
        published = await store_published(api.pool, api.server.settings.redis_url, records)
        assert published == len(records)

        expected = {}
        for number, flow_filter in enumerate(filters):
            edges = (await api.data(FLOWS, {"f": flow_filter}, role="viewer"))["flows"]["edges"]
            expected[str(number)] = Counter(key(edge["node"]) for edge in edges)
        sizes = [sum(counts.values()) for counts in expected.values()]
        assert min(sizes) > 0
        assert sizes[0] == len(records) - 1  # all but the other namespace's flow

        received: dict[str, Counter[tuple[Any, ...]]] = {str(number): Counter() for number in range(len(filters))}
        for _ in range(sum(sum(counts.values()) for counts in expected.values())):
            message = await receive(ws)
            assert message["type"] == "next", message
            received[message["id"]][key(message["payload"]["data"]["flowTail"])] += 1
        with pytest.raises(TimeoutError):  # nothing more: the other namespace's flow matched no filter
            await asyncio.wait_for(ws.recv(), 0.5)
        assert received == expected


async def _more(redis: Redis, wanted: int) -> bool:
    return await listeners(redis) >= wanted


async def test_the_tail_starts_now_and_nothing_is_published_without_listeners(api, redis):
    namespace = f"tail-{secrets.token_hex(3)}"
    records = tail_records(namespace, recent_start(10))
    if await listeners(redis) == 0:  # another session's tail would legitimately receive it
        assert await store_published(api.pool, api.server.settings.redis_url, records) == 0
    async with session(api) as ws:
        before = await listeners(redis)
        payload = {"query": TAIL, "variables": {"f": {"namespace": namespace}}}
        await send(ws, {"id": "1", "type": "subscribe", "payload": payload})
        await api.wait_for(lambda: _more(redis, before + 1))
        with pytest.raises(TimeoutError):  # the flows stored before the subscription are not replayed
            await asyncio.wait_for(ws.recv(), 0.5)
        await send(ws, {"id": "1", "type": "complete"})
        await api.wait_for(lambda: _fewer(redis, before + 1))


async def _fewer(redis: Redis, bound: int) -> bool:
    return await listeners(redis) < bound


async def test_a_bad_filter_is_refused_with_a_typed_error(api):
    async with session(api) as ws:
        variables = {"f": {"from": "2024-06-13T01:00:00Z", "to": "2024-06-13T00:00:00Z"}}
        await send(ws, {"id": "1", "type": "subscribe", "payload": {"query": TAIL, "variables": variables}})
        message = await receive(ws)
        assert message["type"] == "next", message
        assert message["payload"]["data"] is None
        assert message["payload"]["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "filter.from"}
        assert await receive(ws) == {"id": "1", "type": "complete"}
