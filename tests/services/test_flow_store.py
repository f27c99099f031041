"""The flow store's write path against real PostgreSQL: formats, rejects, idempotency, rollups, retention.

Most tests run in the rolled-back ``db`` transaction through ``FlowWriter.write_on``; the writer is
fresh per test because its caches assume its transactions commit.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pytest
from flowdb import SAMPLE_TIME, json_lines, parse, raw_batch, sample_lines, write_batch

from ringfence.flows.formats import parse_record
from ringfence.flows.record import Endpoint, EndpointType, Flow, FlowAction, Reporter
from services.collector.parse import TimeWindow
from services.collector.rows import RowEncoder
from services.collector.store import FlowWriter
from services.common.db import flow_copy, flows, inventory, rejects, rollup_hours
from services.common.db.flows import FlowFilter, InternCollisionError

SAMPLES = ("calico-flows.log", "goldmane.jsonl", "hubble.jsonl")


def writer(pool: asyncpg.Pool) -> FlowWriter:
    return FlowWriter(pool, clock=lambda: SAMPLE_TIME)


def calico(**overrides: Any) -> dict[str, Any]:
    """A realistic Calico Enterprise flow-log record (frontend -> backend, allowed at the source)."""
    record: dict[str, Any] = {
        "start_time": 1718236800,
        "end_time": 1718237100,
        "source_ip": None,
        "source_name": "-",
        "source_name_aggr": "frontend-864f4fcdfd-*",
        "source_namespace": "storefront",
        "source_port": None,
        "source_type": "wep",
        "source_labels": {"labels": ["app=frontend", "pod-template-hash=864f4fcdfd"]},
        "dest_ip": None,
        "dest_name": "-",
        "dest_name_aggr": "backend-6cfbdd589f-*",
        "dest_namespace": "storefront",
        "dest_port": 5432,
        "dest_type": "wep",
        "dest_labels": {"labels": ["app=backend"]},
        "dest_service_namespace": "-",
        "dest_service_name": "-",
        "dest_service_port": "-",
        "dest_service_port_num": None,
        "dest_domains": None,
        "proto": "tcp",
        "action": "allow",
        "reporter": "src",
        "policies": {
            "enforced_policies": [
                "0|security|security.known-bad-actors|pass|-1",
                "1|default|storefront/default.fe|allow|0",
            ],
            "pending_policies": ["0|default|storefront/staged:default.fe-new|deny|-1"],
        },
        "bytes_in": 1000,
        "bytes_out": 2000,
        "packets_in": 10,
        "packets_out": 20,
        "num_flows": 3,
        "num_flows_started": 3,
        "num_flows_completed": 2,
        "host": "node-a",
    }
    record.update(overrides)
    return record


async def all_flows(conn: asyncpg.Connection, **filters: Any) -> list[Flow]:
    page = await flows.query_flows(conn, FlowFilter(**filters), first=10_000)
    return [item.flow for item in page.items]


@pytest.mark.parametrize("sample", SAMPLES)
async def test_each_format_is_stored_and_reads_back_as_parsed(
    db: asyncpg.Connection, db_pool: asyncpg.Pool, sample: str
) -> None:
    raw = raw_batch(sample_lines(sample))
    chunk = parse(raw)
    assert chunk.rejects == []
    parsed = list(_parsed_flows(raw))
    result = await writer(db_pool).write_on(db, write_batch(raw, chunk))
    assert (result.outcome.accepted, result.outcome.rejected) == (len(parsed), 0)
    assert Counter(await all_flows(db)) == Counter(parsed)


def _parsed_flows(raw: Any) -> list[Flow]:
    # The parsers' own answer, read independently of the collector.
    return [parse_record(orjson.loads(line)) for line in raw.lines]


BAD_LINES = [
    (b"{not json", "not JSON", ""),
    (json_lines([calico(reporter=None)])[0], "required field is missing", "reporter"),
    (json_lines([calico(dest_port="5432")])[0], "must be an integer", "dest_port"),
    (json_lines([calico(bytes_in=-5)])[0], "negative", "bytes_in"),
    (json_lines([calico(end_time=1718236000)])[0], "before start time", "end_time"),
    (json_lines([calico(action="maybe")])[0], "'maybe' is not one of", "action"),
    (json_lines([calico(packets_out=2**60)])[0], "absurd", "packets_out"),
    (json_lines([calico(host="a\u0000b")])[0], "NUL", ""),
    (b"[1, 2, 3]", "", ""),
]


async def test_bad_lines_become_rejects_and_good_lines_around_them_are_stored(
    db: asyncpg.Connection, db_pool: asyncpg.Pool
) -> None:
    good = json_lines([calico(), calico(reporter="dst")])
    lines = [good[0], b"", *[line for line, _, _ in BAD_LINES], good[1]]
    raw = raw_batch(lines, source="file:test.log")
    result = await writer(db_pool).write_on(db, write_batch(raw))
    assert (result.outcome.accepted, result.outcome.rejected) == (2, len(BAD_LINES))
    assert len(await all_flows(db)) == 2
    stored = sorted(await rejects.list_rejects(db, source="file:test.log"), key=lambda item: item.reject.line_no or 0)
    assert [item.reject.line_no for item in stored] == list(range(3, 3 + len(BAD_LINES)))  # line 2 is blank
    for item, (line, reason, field) in zip(stored, BAD_LINES, strict=True):
        assert reason in item.reject.reason
        assert item.reject.field == field
        assert item.reject.raw == line.decode().replace("\x00", "\ufffd")
        assert item.reject.byte_offset == raw.offsets[item.reject.line_no - 1]
    assert [error["line"] for error in result.outcome.errors] == list(range(3, 3 + len(BAD_LINES)))


async def test_a_long_rejected_line_is_kept_truncated(db: asyncpg.Connection, db_pool: asyncpg.Pool) -> None:
    line = b'{"start_time": "' + b"x" * 10_000 + b'"}'
    await writer(db_pool).write_on(db, write_batch(raw_batch([line])))
    (stored,) = await rejects.list_rejects(db)
    assert len(stored.reject.raw) == rejects.RAW_LIMIT
    assert stored.reject.raw_truncated


async def test_records_outside_the_retention_window_are_rejected(db: asyncpg.Connection, db_pool: asyncpg.Pool) -> None:
    window = TimeWindow(earliest_start=1718236800, latest_end=1718240000)
    lines = json_lines([calico(start_time=1718236500, end_time=1718236800), calico(), calico(end_time=1718300000)])
    raw = raw_batch(lines)
    result = await writer(db_pool).write_on(db, write_batch(raw, parse(raw, window=window)))
    assert (result.outcome.accepted, result.outcome.rejected) == (1, 2)
    assert ["retention" in error["error"] or "future" in error["error"] for error in result.outcome.errors] == [
        True,
        True,
    ]


async def test_a_retried_batch_is_stored_once(db: asyncpg.Connection, db_pool: asyncpg.Pool) -> None:
    raw = raw_batch([*json_lines([calico(), calico(num_flows=1)]), b"oops"], key="batch-1")
    store = writer(db_pool)
    first = await store.write_on(db, write_batch(raw))
    again = await store.write_on(db, write_batch(raw))
    assert not first.duplicate
    assert again.duplicate
    assert again.outcome == first.outcome
    assert len(await all_flows(db)) == 2
    assert await rejects.count_rejects(db) == 1
    other_key = raw_batch(raw.lines, key="batch-2")
    assert not (await store.write_on(db, write_batch(other_key))).duplicate


async def test_a_row_the_database_refuses_is_rejected_alone(db: asyncpg.Connection, db_pool: asyncpg.Pool) -> None:
    # The parsers never produce such an address; a row the database refuses must still cost only itself.
    raw = raw_batch(json_lines([calico(), calico(), calico()]))
    chunk = parse(raw)
    encoder = RowEncoder()
    replacement = encoder.new_batch()
    encoder.add(replacement, _flow_with_ip("999.1.2.3"))
    assert replacement.copy_data is None  # the collector cannot encode it either: asyncpg will say why
    chunk.encoded.rows[1] = replacement.rows[0]
    chunk.encoded.copy_data = None
    result = await writer(db_pool).write_on(db, write_batch(raw, chunk))
    assert (result.outcome.accepted, result.outcome.rejected) == (2, 1)
    assert "database refused" in result.outcome.errors[0]["error"]
    assert result.outcome.errors[0]["line"] == 2
    assert len(await all_flows(db)) == 2
    (stored,) = await rejects.list_rejects(db)
    assert stored.reject.raw == raw.lines[1].decode()


STORED_COLUMNS = ", ".join(flows.FLOW_COLUMNS)


async def test_rows_the_collector_encodes_for_copy_are_stored_as_asyncpg_would_store_them(
    db: asyncpg.Connection,
) -> None:
    records = [
        calico(),
        calico(reporter="dst", action="deny", policies=None, source_labels=None, num_flows=None, host=None),
        calico(source_ip="10.0.0.7", source_port=43210, source_name="frontend-864f4fcdfd-2hhv4", proto="udp"),
        calico(dest_type="net", dest_name_aggr="pub", dest_namespace="-", dest_labels=None, dest_ip="2001:db8::1"),
        calico(dest_domains=["api.twilio.com", "twilio.com"], dest_service_port="https", dest_service_port_num=443),
        calico(dest_service_namespace="storefront", dest_service_name="backend", dest_service_port=5432, proto=132),
        calico(bytes_in=2**48 - 1, packets_out=0, start_time=0, end_time=0),
        calico(source_labels={"labels": ["app=frontend", "projectcalico.org/serviceaccount=fe"]}),
    ]
    chunk = parse(raw_batch(json_lines(records)))
    assert not chunk.rejects
    copy_data = chunk.encoded.copy_data
    assert copy_data is not None
    await flows.ensure_partitions(db, date(1970, 1, 1), date(1970, 1, 1))
    await flows.ensure_partitions(db, date(2024, 6, 13), date(2024, 6, 13))
    query = f"SELECT {STORED_COLUMNS} FROM flows"
    await flow_copy.copy_encoded(db, copy_data)
    ours = sorted((tuple(row) for row in await db.fetch(query)), key=repr)
    await db.execute("DELETE FROM flows")
    await flows.copy_rows(db, chunk.encoded.rows)
    theirs = sorted((tuple(row) for row in await db.fetch(query)), key=repr)
    assert len(ours) == len(records)
    assert ours == theirs


async def test_a_batch_whose_rollup_sums_pass_64_bits_is_stored_in_parts(
    db: asyncpg.Connection, db_pool: asyncpg.Pool
) -> None:
    # Each record's counters stay under 2**48, but 2**15 + 1 of them on one edge and bucket sum past
    # 2**63, which one bigint rollup row cannot hold: the batch is stored in halves, each with its own sums.
    count = 2**15 + 1
    raw = raw_batch(json_lines([calico(bytes_in=2**48 - 1)] * count))
    result = await writer(db_pool).write_on(db, write_batch(raw))
    assert (result.outcome.accepted, result.outcome.rejected) == (count, 0)
    assert await db.fetchval("SELECT count(*) FROM flows") == count
    total = await db.fetchval("SELECT sum(bytes_in) FROM flow_edges_5m WHERE reporter = 'src'")
    assert total == count * (2**48 - 1) > 2**63
    assert await db.fetchval("SELECT count(*) FROM flow_edges_5m") > 1


def _flow_with_ip(ip: str) -> Flow:
    source = Endpoint(EndpointType.WORKLOAD, "frontend-864f4fcdfd-*", "storefront", ip=ip)
    dest = Endpoint(EndpointType.NETWORK, "pub")
    return Flow(1718236800, 1718237100, source, dest, "tcp", Reporter.SOURCE, FlowAction.ALLOW)


EDGE_ROLLUP = """
SELECT bucket, src_namespace, src_name_aggr, src_type, dst_namespace, dst_name_aggr, dst_type, dst_port, proto,
       action, reporter, sum(records), sum(num_flows), sum(packets_in), sum(packets_out), sum(bytes_in),
       sum(bytes_out), count(*) AS parts
FROM {table} GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
"""
DIRECT_EDGES = """
SELECT date_bin({width}, start_time, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS bucket, src_namespace,
       src_name_aggr, src_type, dst_namespace, dst_name_aggr, dst_type, dst_port, proto, action, reporter,
       count(*), sum(num_flows), sum(packets_in), sum(packets_out), sum(bytes_in), sum(bytes_out)
FROM flows GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
"""
HIT_ROLLUP = """
SELECT bucket, pending, tier, kind, namespace, name, rule_index, action, sum(records), sum(num_flows),
       sum(packets), sum(bytes), count(*) AS parts
FROM {table} GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8
"""
DIRECT_HITS = """
SELECT date_bin({width}, f.start_time, TIMESTAMPTZ '1970-01-01 00:00:00+00'), h.pending, h.tier, h.kind,
       h.namespace, h.name, h.rule_index, h.action, count(*), sum(f.num_flows),
       sum(f.packets_in + f.packets_out), sum(f.bytes_in + f.bytes_out)
FROM flows AS f JOIN trace_hits AS h ON h.trace_set = f.trace_set
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8
"""


async def _rollup(db: asyncpg.Connection, query: str, table: str) -> tuple[list[tuple[Any, ...]], int]:
    """The rollup's rows summed per key and bucket (what readers see), and the most partial rows of one key."""
    rows = await db.fetch(query.format(table=table))
    return [tuple(row)[:-1] for row in rows], max((row["parts"] for row in rows), default=0)


async def _direct(db: asyncpg.Connection, query: str, width: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in await db.fetch(query.format(width=width))]


async def test_rollups_agree_with_a_direct_aggregate_of_the_raw_table(
    db: asyncpg.Connection, db_pool: asyncpg.Pool
) -> None:
    store = writer(db_pool)
    # Several batches touching the same rollup rows (same buckets and keys), across two days.
    for sample in SAMPLES:
        await store.write_on(db, write_batch(raw_batch(sample_lines(sample))))
    lines = json_lines(
        calico(start_time=start, end_time=start + 300, num_flows=index % 7 + 1, bytes_in=index * 11, host=host)
        for index, (start, host) in enumerate(
            (1718236800 + 300 * (step % 4) + 86400 * (step % 2), f"node-{step % 3}") for step in range(60)
        )
    )
    for part in range(3):
        await store.write_on(db, write_batch(raw_batch(lines[part::3])))
    direct_edges = await _direct(db, DIRECT_EDGES, "'5 minutes'")
    direct_hits = await _direct(db, DIRECT_HITS, "'5 minutes'")
    # Each batch appended its partial sums: summed, they are the direct aggregate.
    edges, edge_parts = await _rollup(db, EDGE_ROLLUP, "flow_edges_5m")
    hits, hit_parts = await _rollup(db, HIT_ROLLUP, "policy_hits_5m")
    assert len(edges) > 20
    assert len(hits) > 10
    assert edges == direct_edges
    assert hits == direct_hits
    assert edge_parts > 1  # batches share keys and buckets
    assert hit_parts > 1
    # The hours they touched wait for compaction, which merges the partial rows and builds the hours.
    pending = {row["hour"] for row in await db.fetch("SELECT hour FROM rollup_hours_pending")}
    assert pending == {datetime.fromtimestamp(1718236800 + day, UTC) for day in (0, 86400)}
    assert await db.fetchval("SELECT count(*) FROM flow_edges_1h") == 0
    report = await rollup_hours.compact(db)
    assert (report.compacted, report.busy) == (2, 0)
    assert await db.fetchval("SELECT count(*) FROM rollup_hours_pending") == 0
    assert await _rollup(db, EDGE_ROLLUP, "flow_edges_5m") == (direct_edges, 1)
    assert await _rollup(db, HIT_ROLLUP, "policy_hits_5m") == (direct_hits, 1)
    edges_hourly, _ = await _rollup(db, EDGE_ROLLUP, "flow_edges_1h")
    assert len(edges_hourly) < len(edges)  # hours do merge buckets
    assert edges_hourly == await _direct(db, DIRECT_EDGES, "'1 hour'")
    hourly, _ = await _rollup(db, HIT_ROLLUP, "policy_hits_1h")
    assert hourly == await _direct(db, DIRECT_HITS, "'1 hour'")
    # And against the records themselves, not only SQL against SQL: every hit of every trace counted once.
    expected: Counter[tuple[Any, ...]] = Counter()
    for flow in await all_flows(db):
        for pending_trace, trace in ((False, flow.enforced_policies), (True, flow.pending_policies)):
            for hit in trace:
                expected[(flow.start_time - flow.start_time % 300, pending_trace, hit.tier, hit.action)] += (
                    flow.num_flows
                )
    got: Counter[tuple[Any, ...]] = Counter()
    for row in hits:
        got[(int(row[0].timestamp()), row[1], row[2], row[7])] += int(row[9])
    assert got == expected
    # A batch for a compacted hour marks it again; a second compaction folds it in.
    await store.write_on(db, write_batch(raw_batch(lines[:1])))
    assert await db.fetchval("SELECT count(*) FROM rollup_hours_pending") == 1
    await rollup_hours.compact(db)
    assert (await _rollup(db, EDGE_ROLLUP, "flow_edges_1h"))[0] == await _direct(db, DIRECT_EDGES, "'1 hour'")


async def test_retention_drops_whole_daily_partitions(db: asyncpg.Connection, db_pool: asyncpg.Pool) -> None:
    day = 86400
    base = 1718236800  # 2024-06-13 00:00 UTC
    lines = json_lines(calico(start_time=base + offset, end_time=base + offset + 300) for offset in (0, day, 2 * day))
    await writer(db_pool).write_on(db, write_batch(raw_batch(lines)))
    now = datetime.fromtimestamp(base + 2 * day + 3600, UTC)  # 2024-06-15 01:00
    await rollup_hours.compact(db)
    await writer(db_pool).write_on(db, write_batch(raw_batch(lines[:1])))  # the first day's hour pending again
    dropped = await flows.drop_expired_partitions(db, now, retention_days=1)
    assert sorted(dropped) == [
        "flow_edges_1h_p20240613",
        "flow_edges_5m_p20240613",
        "flows_p20240613",
        "policy_hits_1h_p20240613",
        "policy_hits_5m_p20240613",
    ]
    remaining = sorted(flow.start_time for flow in await all_flows(db))
    assert remaining == [base + day, base + 2 * day]
    assert await db.fetchval("SELECT count(*) FROM rollup_hours_pending") == 0  # its mark went with it
    first_kept_day = datetime.fromtimestamp(base + day, UTC)
    assert await db.fetchval("SELECT count(*) FROM flow_edges_5m WHERE bucket < $1", first_kept_day) == 0
    assert await db.fetchval("SELECT count(*) FROM flow_edges_5m") == 2
    assert await db.fetchval("SELECT count(*) FROM flow_edges_1h WHERE bucket < $1", first_kept_day) == 0
    assert await db.fetchval("SELECT count(*) FROM flow_edges_1h") == 2
    assert await flows.drop_expired_partitions(db, now, retention_days=1) == []


async def test_partitions_are_created_ahead(db: asyncpg.Connection) -> None:
    first, last = date(2031, 1, 1), date(2031, 1, 3)
    assert await flows.ensure_partitions(db, first, last) == 15  # three days of flows and of each of 4 rollups
    assert await flows.ensure_partitions(db, first, last) == 0


async def test_inventory_records_namespaces_and_workloads_seen(db: asyncpg.Connection, db_pool: asyncpg.Pool) -> None:
    store = writer(db_pool)
    await store.write_on(db, write_batch(raw_batch(sample_lines("calico-flows.log"))))
    later = calico(start_time=1718240000, end_time=1718240300, source_labels={"labels": ["app=frontend", "v=2"]})
    await store.write_on(db, write_batch(raw_batch(json_lines([later]))))
    workloads = {(item.namespace, item.name_aggr): item for item in await inventory.list_workloads(db)}
    assert ("storefront", "backend-6cfbdd589f-*") in workloads
    assert ("kube-system", "coredns-76f75df574-*") in workloads
    frontend = workloads[("storefront", "frontend-864f4fcdfd-*")]
    assert frontend.labels == (("app", "frontend"), ("v", "2"))  # the most recent labels
    assert frontend.first_seen == datetime.fromtimestamp(1718236800, UTC)
    assert frontend.last_seen == datetime.fromtimestamp(1718240300, UTC)
    assert {item.name for item in await inventory.list_namespaces(db)} == {"storefront", "kube-system"}


async def test_a_hash_collision_is_refused_not_mixed(db: asyncpg.Connection) -> None:
    await flows.insert_label_sets(db, {42: ("app=a",)})
    await flows.insert_label_sets(db, {42: ("app=a",)})  # the same value again is fine
    with pytest.raises(InternCollisionError):
        await flows.insert_label_sets(db, {42: ("app=b",)})


async def test_counters_sum_exactly_in_rollups_beyond_32_bits(db: asyncpg.Connection, db_pool: asyncpg.Pool) -> None:
    big = 2**40
    lines = json_lines([calico(bytes_in=big), calico(bytes_in=big, reporter="dst")])
    await writer(db_pool).write_on(db, write_batch(raw_batch(lines)))
    assert await db.fetchval("SELECT sum(bytes_in) FROM flow_edges_5m") == Decimal(2 * big)


async def test_graph_and_board_answer_the_same_before_and_after_compaction(
    db: asyncpg.Connection, db_pool: asyncpg.Pool
) -> None:
    store = writer(db_pool)
    base = 1718236800  # 2024-06-13 00:00 UTC
    lines = json_lines(
        calico(start_time=start, end_time=start + 300, num_flows=index % 5 + 1, host=f"node-{index % 3}")
        for index, start in enumerate(base + 300 * (step % 30) for step in range(90))
    )
    for part in range(3):
        await store.write_on(db, write_batch(raw_batch(lines[part::3])))
    window = FlowFilter(from_=datetime.fromtimestamp(base, UTC), to=datetime.fromtimestamp(base + 86400, UTC))

    async def answers() -> tuple[Any, Any]:
        graph = await flows.flow_graph(db, window)
        board = await flows.policy_board_counts(db, window.from_, window.to)
        return sorted(map(repr, graph.edges)), board

    before = await answers()
    assert await db.fetchval("SELECT count(*) FROM rollup_hours_pending") == 3  # 2.5 hours of windows
    assert (await rollup_hours.compact(db)).compacted == 3
    assert await answers() == before
    (edge,) = (await flows.flow_graph(db, window)).edges
    assert edge.num_flows == sum(index % 5 + 1 for index in range(90))
    counted = {(count.tier, count.action): count.flows for count in before[1]}
    assert counted[("default", "allow")] == edge.num_flows  # every record passes default.fe once


async def test_compaction_leaves_an_hour_a_batch_is_still_writing(db_pool: asyncpg.Pool) -> None:
    hour = 1718236800 // 3600
    async with db_pool.acquire() as writing, db_pool.acquire() as compacting:
        transaction = writing.transaction()
        await transaction.start()
        try:
            await rollup_hours.mark_hours(writing, [hour])  # what a batch does first; held until it commits
            await writing.execute(
                "INSERT INTO rollup_hours_pending (hour, marked_at) VALUES (to_timestamp($1::bigint * 3600), now())",
                hour + 1,
            )
        finally:
            await transaction.commit()
        # Committed: both hours pending and free; now hold the first one again in an open transaction.
        transaction = writing.transaction()
        await transaction.start()
        await rollup_hours.mark_hours(writing, [hour])
        report = await rollup_hours.compact(compacting)
        assert (report.compacted, report.busy) == (1, 1)
        pending = await compacting.fetch("SELECT hour FROM rollup_hours_pending")
        assert [row["hour"] for row in pending] == [datetime.fromtimestamp(hour * 3600, UTC)]
        await transaction.commit()
        assert (await rollup_hours.compact(compacting)).compacted == 1
        assert await compacting.fetchval("SELECT count(*) FROM rollup_hours_pending") == 0
