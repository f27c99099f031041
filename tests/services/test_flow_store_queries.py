"""The flow store's read side: flow pages and filters, the flow graph, the policy board, evaluation keys.

Each answer is checked against the same question asked of the parsed records in Python.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest
from flowdb import SAMPLE_TIME, raw_batch, sample_lines, write_batch

from ringfence.flows.formats import parse_record
from ringfence.flows.hits import hit_policy_name
from ringfence.flows.record import Endpoint, Flow
from services.collector.store import FlowWriter
from services.common.db import flows
from services.common.db.flows import CursorError, FlowFilter

SAMPLES = ("calico-flows.log", "goldmane.jsonl", "hubble.jsonl")


@pytest.fixture
async def stored(db: asyncpg.Connection, db_pool: asyncpg.Pool) -> list[Flow]:
    """The three sample files stored in the test's transaction; returns the parsed records."""
    writer = FlowWriter(db_pool, clock=lambda: SAMPLE_TIME)
    parsed: list[Flow] = []
    for sample in SAMPLES:
        lines = sample_lines(sample)
        await writer.write_on(db, write_batch(raw_batch(lines)))
        parsed += [parse_record(orjson.loads(line)) for line in lines]
    return parsed


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def on_side(endpoint: Endpoint, namespace: str | None, workload: str | None) -> bool:
    return (namespace is None or endpoint.namespace == namespace) and (
        workload is None or endpoint.name_aggr == workload
    )


def reference(flow_filter: FlowFilter) -> Callable[[Flow], bool]:
    """The filter's documented meaning, in Python."""
    f = flow_filter

    def keep(flow: Flow) -> bool:
        hits = flow.enforced_policies + flow.pending_policies
        return (
            (f.from_ is None or flow.start_time >= f.from_.timestamp())
            and (f.to is None or flow.start_time < f.to.timestamp())
            and (
                (f.namespace is None and f.workload is None)
                or on_side(flow.source, f.namespace, f.workload)
                or on_side(flow.dest, f.namespace, f.workload)
            )
            and (f.action is None or flow.action == f.action)
            and (f.reporter is None or flow.reporter == f.reporter)
            and (f.port is None or flow.dest.port == f.port)
            and (f.proto is None or flow.proto == f.proto)
            and (
                f.policy is None
                or any(
                    hit_policy_name(hit) == f.policy
                    and (f.policy_namespace is None or hit.namespace == f.policy_namespace)
                    for hit in hits
                )
            )
        )

    return keep


FILTERS = [
    FlowFilter(),
    FlowFilter(namespace="kube-system"),
    FlowFilter(namespace="storefront", workload="backend-6cfbdd589f-*"),
    FlowFilter(workload="coredns-76f75df574-*"),
    FlowFilter(action="deny"),
    FlowFilter(reporter="dst", namespace="storefront"),
    FlowFilter(port=53, proto="udp"),
    FlowFilter(proto="tcp", action="allow"),
    FlowFilter(policy="platform.twilio-integration"),
    FlowFilter(policy="kns.storefront"),
    FlowFilter(policy="default.frontend", policy_namespace="storefront"),
    FlowFilter(from_=at(1718236800), to=at(1718237100)),
    FlowFilter(from_=at(1718237100), namespace="storefront", action="allow"),
]


@pytest.mark.parametrize("flow_filter", FILTERS, ids=lambda f: repr(f).removeprefix("FlowFilter"))
async def test_filters_select_what_they_describe(
    db: asyncpg.Connection, stored: list[Flow], flow_filter: FlowFilter
) -> None:
    expected = [flow for flow in stored if reference(flow_filter)(flow)]
    page = await flows.query_flows(db, flow_filter, first=1000)
    assert Counter(item.flow for item in page.items) == Counter(expected)
    assert await flows.count_flows(db, flow_filter) == len(expected)
    assert not page.has_next_page


async def test_every_filter_of_the_table_selects_something_and_not_everything(stored: list[Flow]) -> None:
    # Guards the table above against filters that would pass by matching nothing (or all).
    for flow_filter in FILTERS[1:]:
        selected = sum(map(reference(flow_filter), stored))
        assert 0 < selected < len(stored), flow_filter


@pytest.mark.parametrize("size", [1, 4, 7])
async def test_pages_walk_every_flow_once_newest_first(db: asyncpg.Connection, stored: list[Flow], size: int) -> None:
    everything = (await flows.query_flows(db, FlowFilter(), first=1000)).items
    walked, after, pages = [], None, 0
    while True:
        page = await flows.query_flows(db, FlowFilter(), first=size, after=after)
        walked += page.items
        pages += 1
        assert len(page.items) <= size
        if not page.has_next_page:
            break
        after = page.end_cursor
    assert [item.id for item in walked] == [item.id for item in everything]
    assert len({item.id for item in walked}) == len(stored)
    assert pages == -(-len(stored) // size)
    times = [item.flow.start_time for item in walked]
    assert times == sorted(times, reverse=True)


@pytest.mark.parametrize("cursor", ["", "bm90IGEgY3Vyc29y", "!!!"])
async def test_a_foreign_cursor_is_refused(db: asyncpg.Connection, cursor: str) -> None:
    with pytest.raises(CursorError):
        await flows.query_flows(db, FlowFilter(), after=cursor)


def node_id(endpoint: Endpoint) -> str:
    kind = {"wep": "workload", "net": "network", "ns": "networkset", "hep": "host"}[endpoint.type]
    return f"{kind}:{endpoint.namespace}/{endpoint.name_aggr}" if endpoint.namespace else f"{kind}:{endpoint.name_aggr}"


@pytest.mark.parametrize(
    "flow_filter",
    [FlowFilter(), FlowFilter(namespace="storefront"), FlowFilter(namespace="kube-system", action="allow")],
    ids=repr,
)
async def test_flow_graph_counts_each_connection_once(
    db: asyncpg.Connection, stored: list[Flow], flow_filter: FlowFilter
) -> None:
    per_reporter: dict[tuple[Any, ...], int] = defaultdict(int)
    namespaces: set[str] = set()
    for flow in filter(reference(flow_filter), stored):
        key = (node_id(flow.source), node_id(flow.dest), flow.dest.port, flow.proto, flow.action)
        per_reporter[(*key, flow.reporter)] += flow.num_flows
        namespaces |= {ns for ns in (flow.source.namespace, flow.dest.namespace) if ns}
    expected: dict[tuple[Any, ...], int] = {}
    for (*key, _reporter), count in per_reporter.items():
        expected[tuple(key)] = max(expected.get(tuple(key), 0), count)
    graph = await flows.flow_graph(db, flow_filter)
    got = {(e.source, e.target, e.dest_port, e.proto, e.action): e.num_flows for e in graph.edges}
    assert got == expected
    node_ids = {node.id for node in graph.nodes}
    assert node_ids == {end for key in expected for end in key[:2]} | {f"namespace:{ns}" for ns in namespaces}


async def test_flow_graph_refuses_a_policy_filter(db: asyncpg.Connection) -> None:
    with pytest.raises(ValueError, match="policy"):
        await flows.flow_graph(db, FlowFilter(policy="x"))


async def test_policy_board_counts_enforced_hits_and_staged_policies(
    db: asyncpg.Connection, stored: list[Flow]
) -> None:
    expected: Counter[tuple[Any, ...]] = Counter()
    for flow in stored:
        counted = [*flow.enforced_policies, *(hit for hit in flow.pending_policies if hit.staged)]
        for hit in counted:
            expected[(hit.tier, hit.kind, hit.namespace, hit_policy_name(hit), hit.rule_index, hit.action)] += (
                flow.num_flows
            )
    board = await flows.policy_board_counts(db, None, None)
    got = Counter({(c.tier, c.kind, c.namespace, c.name, c.rule_index, c.action): c.flows for c in board})
    assert got == expected
    assert any(count.staged for count in board)
    assert all(count.staged == (count.kind in ("snp", "sgnp", "sknp")) for count in board)
    # A window holding nothing counts nothing.
    assert await flows.policy_board_counts(db, at(1718300000), at(1718400000)) == []


async def test_flow_keys_merge_records_that_evaluate_alike(db: asyncpg.Connection, stored: list[Flow]) -> None:
    expected: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    for flow in stored:
        key = (
            flow.reporter,
            flow.action,
            flow.proto,
            flow.source,
            flow.dest,
            flow.dest_domains,
            flow.dest_service_namespace,
            flow.dest_service_name,
            flow.dest_service_port,
            flow.dest_service_port_num,
        )
        expected[key][0] += 1
        expected[key][1] += flow.num_flows
        expected[key][2] += flow.bytes_in + flow.bytes_out
    got = {}
    async for item in flows.flow_keys(db, None, None, prefetch=3):
        f = item.flow
        key = (
            f.reporter,
            f.action,
            f.proto,
            f.source,
            f.dest,
            f.dest_domains,
            f.dest_service_namespace,
            f.dest_service_name,
            f.dest_service_port,
            f.dest_service_port_num,
        )
        assert key not in got
        got[key] = [item.records, f.num_flows, f.bytes_in + f.bytes_out]
        assert f.enforced_policies == f.pending_policies == ()
    assert got == dict(expected)
    assert any(value[0] > 1 for value in got.values())  # some keys do merge records
    scoped = [item async for item in flows.flow_keys(db, None, None, namespace="kube-system")]
    assert scoped
    assert all("kube-system" in (k.flow.source.namespace, k.flow.dest.namespace) for k in scoped)


@pytest.mark.parametrize(
    ("start", "stop"),
    [
        ("00:07", "02:53"),  # whole hours in the middle, ragged ends
        ("00:00", "03:00"),  # whole hours only
        ("01:10", "01:40"),  # inside one hour
        ("02:55", "03:30"),  # the last bucket only
    ],
)
async def test_policy_board_windows_count_the_buckets_they_overlap(
    db: asyncpg.Connection, db_pool: asyncpg.Pool, start: str, stop: str
) -> None:
    base = 1718236800  # 2024-06-13 00:00 UTC
    records = []
    for step in range(36):  # one record every 5 minutes for 3 hours, each with its own count
        record = orjson.loads(sample_lines("calico-flows.log")[0])
        record.update(start_time=base + 300 * step, end_time=base + 300 * step + 300, num_flows=step + 1)
        records.append(orjson.dumps(record))
    writer = FlowWriter(db_pool, clock=lambda: SAMPLE_TIME)
    await writer.write_on(db, write_batch(raw_batch(records)))

    def moment(clock: str) -> int:
        hours, minutes = clock.split(":")
        return base + int(hours) * 3600 + int(minutes) * 60

    since, until = moment(start), moment(stop)
    # A 5-minute bucket counts when it overlaps the window.
    expected = sum(step + 1 for step in range(36) if since - 300 < base + 300 * step < until)
    board = await flows.policy_board_counts(db, at(since), at(until))
    profile = [count for count in board if count.kind == "pro"]
    assert [count.flows for count in profile] == [expected]


GRAPH_WINDOWS = [
    ("00:00", "03:00"),  # whole hours only
    ("00:07", "02:53"),  # whole hours in the middle, ragged ends
    ("00:55", "02:05"),  # one whole hour, a bucket on each side
    ("01:10", "01:40"),  # inside one hour
    ("00:30", "01:30"),  # across one boundary, no whole hour
    ("00:00", "02:31"),  # aligned start only
    ("00:29", "03:00"),  # aligned end only
    (None, "01:47"),  # unbounded start
    ("01:13", None),  # unbounded end
]


@pytest.mark.parametrize(("start", "stop"), GRAPH_WINDOWS)
@pytest.mark.parametrize("namespace", [None, "checkout"])
async def test_flow_graph_windows_count_the_buckets_they_overlap(
    db: asyncpg.Connection, db_pool: asyncpg.Pool, start: str | None, stop: str | None, namespace: str | None
) -> None:
    base = 1718236800  # 2024-06-13 00:00 UTC
    template = orjson.loads(sample_lines("calico-flows.log")[0])
    records = []
    for step in range(36):  # every 5 minutes for 3 hours, both reporters, edges that change with the hour
        for reporter, extra in (("src", 0), ("dst", step % 3)):
            record = dict(template)
            record.update(
                start_time=base + 300 * step,
                end_time=base + 300 * step + 300,
                num_flows=step + 1 + extra,
                reporter=reporter,
                source_name_aggr=f"frontend-{step % 2}-*",
                source_namespace="storefront" if step % 3 else "checkout",
                dest_port=8080 + step // 12,
            )
            records.append(orjson.dumps(record))
    writer = FlowWriter(db_pool, clock=lambda: SAMPLE_TIME)
    await writer.write_on(db, write_batch(raw_batch(records)))
    parsed = [parse_record(orjson.loads(line)) for line in records]

    def moment(clock: str | None) -> datetime | None:
        if clock is None:
            return None
        hours, minutes = clock.split(":")
        return at(base + int(hours) * 3600 + int(minutes) * 60)

    flow_filter = FlowFilter(namespace=namespace, from_=moment(start), to=moment(stop))
    since, until = flow_filter.from_, flow_filter.to

    def overlaps(flow: Flow) -> bool:  # a 5-minute bucket counts when it overlaps the window
        bucket = flow.start_time - flow.start_time % 300
        return (since is None or bucket > since.timestamp() - 300) and (until is None or bucket < until.timestamp())

    per_reporter: dict[tuple[Any, ...], int] = defaultdict(int)
    for flow in parsed:
        if overlaps(flow) and namespace in (None, flow.source.namespace, flow.dest.namespace):
            key = (node_id(flow.source), node_id(flow.dest), flow.dest.port, flow.proto, flow.action)
            per_reporter[(*key, flow.reporter)] += flow.num_flows
    expected: dict[tuple[Any, ...], int] = {}
    for (*key, _reporter), count in per_reporter.items():
        expected[tuple(key)] = max(expected.get(tuple(key), 0), count)
    graph = await flows.flow_graph(db, flow_filter)
    got = {(e.source, e.target, e.dest_port, e.proto, e.action): e.num_flows for e in graph.edges}
    assert got
    assert got == expected
