"""SQL of the flow store's read side: flow pages, the flow graph, the policy board, evaluation keys.

Filters are optional parameters (``$n IS NULL OR ...``). Each query runs with
``plan_cache_mode = force_custom_plan`` so PostgreSQL plans it with the actual values: absent filters
fold away, and the time bounds prune partitions at plan time; with room to aggregate in memory and
without JIT compilation.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg

from ringfence.flows.hits import parse_hit
from ringfence.flows.record import Endpoint, EndpointType, Flow, FlowAction, PolicyHit, Reporter, parse_label_list
from services.common.db.rollup_windows import rollup_ranges

STAGED_KINDS: Final = ("snp", "sgnp", "sknp")
# JIT off: compiling a rollup query's expressions costs more (tens of ms) than running them.
READ_SETTINGS: Final = "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL work_mem = '64MB'; SET LOCAL jit = off"
_BUCKET: Final = timedelta(minutes=5)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class FlowFilter:
    """What to select flows by; every field is optional. Times: ``start_time`` in ``[from_, to)``.

    ``namespace`` matches either side; ``workload`` (a ``name_aggr``) too, on the side in
    ``namespace`` when both are given. ``port`` is the destination port. ``policy`` is a hit's
    policy name as :func:`ringfence.flows.hits.hit_policy_name` spells it (``platform.twilio-integration``,
    ``kns.storefront``), in either trace, optionally of one ``policy_namespace``.
    """

    namespace: str | None = None
    workload: str | None = None
    action: str | None = None
    reporter: str | None = None
    from_: datetime | None = None
    to: datetime | None = None
    port: int | None = None
    proto: str | None = None
    policy: str | None = None
    policy_namespace: str | None = None


class CursorError(ValueError):
    """A pagination cursor this store did not hand out."""


@dataclass(frozen=True, slots=True)
class StoredFlow:
    """A flow record as stored, with its id and its pagination cursor."""

    id: int
    flow: Flow
    cursor: str


@dataclass(frozen=True, slots=True)
class FlowPage:
    """One page of flows, newest first."""

    items: list[StoredFlow]
    has_next_page: bool
    end_cursor: str | None


def encode_cursor(start_time: datetime, flow_id: int) -> str:
    """The opaque cursor of a flow: its start time (microseconds) and id."""
    micros = (start_time - _EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"{micros}:{flow_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (start time, id) a cursor points at; raise :class:`CursorError` for anything else."""
    try:
        micros, flow_id = base64.urlsafe_b64decode(cursor.encode()).decode().split(":")
        return _EPOCH + timedelta(microseconds=int(micros)), int(flow_id)
    except (ValueError, binascii.Error, UnicodeError, OverflowError):
        raise CursorError(f"invalid cursor {cursor!r}") from None


_FLOW_FILTER: Final = """
    f.start_time >= coalesce($1::timestamptz, '-infinity') AND f.start_time < coalesce($2::timestamptz, 'infinity')
    AND ($3::text IS NULL OR f.src_namespace = $3 OR f.dst_namespace = $3)
    AND ($4::text IS NULL
         OR (f.src_name_aggr = $4 AND ($3::text IS NULL OR f.src_namespace = $3))
         OR (f.dst_name_aggr = $4 AND ($3::text IS NULL OR f.dst_namespace = $3)))
    AND ($5::text IS NULL OR f.action = $5)
    AND ($6::text IS NULL OR f.reporter = $6)
    AND ($7::integer IS NULL OR f.dst_port = $7)
    AND ($8::text IS NULL OR f.proto = $8)
    AND ($9::text IS NULL OR f.trace_set IN (
        SELECT h.trace_set FROM trace_hits AS h WHERE h.name = $9 AND ($10::text IS NULL OR h.namespace = $10)))
"""

# Built from constants only (the filter is shared with COUNT_FLOWS); values travel as $n parameters.
_PAGE_HEAD: Final = """
WITH page AS (
    SELECT f.* FROM flows AS f
    WHERE"""
_PAGE_TAIL: Final = """
      AND ($11::timestamptz IS NULL OR (f.start_time, f.id) < ($11::timestamptz, $12::bigint))
    ORDER BY f.start_time DESC, f.id DESC
    LIMIT $13
)
SELECT page.*, host(page.src_ip) AS src_ip_text, host(page.dst_ip) AS dst_ip_text,
       sl.labels AS src_label_texts, dl.labels AS dst_label_texts, t.enforced, t.pending
FROM page
LEFT JOIN label_sets AS sl ON sl.id = page.src_labels
LEFT JOIN label_sets AS dl ON dl.id = page.dst_labels
LEFT JOIN trace_sets AS t ON t.id = page.trace_set
ORDER BY page.start_time DESC, page.id DESC
"""
QUERY_FLOWS: Final = _PAGE_HEAD + _FLOW_FILTER + _PAGE_TAIL

COUNT_FLOWS: Final = "SELECT count(*) FROM flows AS f WHERE" + _FLOW_FILTER  # noqa: S608 - constants only


def _filter_args(flow_filter: FlowFilter) -> tuple[Any, ...]:
    f = flow_filter
    return (f.from_, f.to, f.namespace, f.workload, f.action, f.reporter, f.port, f.proto, f.policy, f.policy_namespace)


async def query_flows(
    conn: asyncpg.Connection, flow_filter: FlowFilter, first: int = 100, after: str | None = None
) -> FlowPage:
    """The ``first`` newest flows matching ``flow_filter`` after the cursor ``after`` (keyset pagination)."""
    if first < 0:
        raise ValueError(f"first must not be negative, got {first}")
    after_time, after_id = decode_cursor(after) if after is not None else (None, None)
    async with conn.transaction():
        await conn.execute(READ_SETTINGS)
        rows = await conn.fetch(QUERY_FLOWS, *_filter_args(flow_filter), after_time, after_id, first + 1)
    items = [
        StoredFlow(row["id"], flow_from_row(row), encode_cursor(row["start_time"], row["id"])) for row in rows[:first]
    ]
    return FlowPage(items, len(rows) > first, items[-1].cursor if items else None)


async def count_flows(conn: asyncpg.Connection, flow_filter: FlowFilter) -> int:
    """How many stored flows match (a full count over the window: prefer narrow windows)."""
    async with conn.transaction():
        await conn.execute(READ_SETTINGS)
        count: int = await conn.fetchval(COUNT_FLOWS, *_filter_args(flow_filter))
    return count


def endpoint_from_row(row: asyncpg.Record, side: str) -> Endpoint:
    """The endpoint of one side (``src``/``dst``) of a row selected with its label texts and IP text."""
    labels = row[f"{side}_label_texts"]
    return Endpoint(
        type=EndpointType(row[f"{side}_type"]),
        name_aggr=row[f"{side}_name_aggr"],
        namespace=row[f"{side}_namespace"],
        name=row[f"{side}_name"],
        labels=parse_label_list(labels) if labels else (),
        ip=row[f"{side}_ip_text"],
        port=row[f"{side}_port"],
        service_account=row[f"{side}_service_account"],
    )


def _hits(texts: list[str] | None) -> tuple[PolicyHit, ...]:
    return tuple(parse_hit(text) for text in texts or ())


def flow_from_row(row: asyncpg.Record, *, with_traces: bool = True) -> Flow:
    """The flow a stored row (or a grouped evaluation key, which has no host and no traces) describes."""
    return Flow(
        start_time=int(row["start_time"].timestamp()),
        end_time=int(row["end_time"].timestamp()),
        source=endpoint_from_row(row, "src"),
        dest=endpoint_from_row(row, "dst"),
        proto=row["proto"],
        reporter=Reporter(row["reporter"]),
        action=FlowAction(row["action"]),
        dest_domains=tuple(row["dst_domains"] or ()),
        dest_service_namespace=row["dst_service_namespace"],
        dest_service_name=row["dst_service_name"],
        dest_service_port=row["dst_service_port"],
        dest_service_port_num=row["dst_service_port_num"],
        host=row.get("host"),
        bytes_in=int(row["bytes_in"]),
        bytes_out=int(row["bytes_out"]),
        packets_in=int(row["packets_in"]),
        packets_out=int(row["packets_out"]),
        num_flows=int(row["num_flows"]),
        num_flows_started=int(row["num_flows_started"]),
        num_flows_completed=int(row["num_flows_completed"]),
        http_requests_allowed_in=int(row["http_requests_allowed_in"]),
        http_requests_denied_in=int(row["http_requests_denied_in"]),
        enforced_policies=_hits(row["enforced"]) if with_traces else (),
        pending_policies=_hits(row["pending"]) if with_traces else (),
    )


# --- flow graph ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GraphNode:
    """A node: ``kind`` is namespace, workload, network (pub/pvt), networkset or host."""

    id: str
    kind: str
    namespace: str | None
    name: str


@dataclass(frozen=True, slots=True)
class GraphEdge:
    """Traffic from one node to another on one port and protocol, with one action.

    Both ends of a connection report it; counts are those of the reporter that saw most, so a
    connection seen twice is not counted twice.
    """

    source: str
    target: str
    dest_port: int | None
    proto: str
    action: str
    num_flows: int
    packets: int
    bytes: int
    reporters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FlowGraph:
    """Nodes (namespaces and the endpoints inside them) and edges between endpoints."""

    nodes: list[GraphNode]
    edges: list[GraphEdge]


_NODE_KINDS: Final = {"wep": "workload", "net": "network", "ns": "networkset", "hep": "host"}

# The filters every part of the graph query applies; values travel as $8..$13.
_EDGE_FILTER: Final = """
  AND ($8::text IS NULL OR f.src_namespace = $8 OR f.dst_namespace = $8)
  AND ($9::text IS NULL
       OR (f.src_name_aggr = $9 AND ($8::text IS NULL OR f.src_namespace = $8))
       OR (f.dst_name_aggr = $9 AND ($8::text IS NULL OR f.dst_namespace = $8)))
  AND ($10::text IS NULL OR f.action = $10)
  AND ($11::text IS NULL OR f.reporter = $11)
  AND ($12::integer IS NULL OR f.dst_port = $12)
  AND ($13::text IS NULL OR f.proto = $13)
"""
_EDGE_COLUMNS: Final = """
    SELECT src_type, src_namespace, src_name_aggr, dst_type, dst_namespace, dst_name_aggr, dst_port, proto, action,
           reporter, num_flows, packets_in + packets_out AS packets, bytes_in + bytes_out AS bytes"""

# Whole hours of the window from the hourly rollup (from the 5-minute one while an hour is pending, see
# services.common.db.rollup_hours), the ragged ends from the 5-minute one, with the ranges of
# services.common.db.rollup_windows ($1..$7). Built from constants only.
FLOW_GRAPH: Final = (
    "WITH parts AS ("  # noqa: S608 - constants only
    + _EDGE_COLUMNS
    + """
    FROM flow_edges_1h AS f
    WHERE $1::boolean AND f.bucket >= coalesce($2::timestamptz, '-infinity')
      AND f.bucket < coalesce($3::timestamptz, 'infinity')
      AND f.bucket NOT IN (SELECT hour FROM rollup_hours_pending)"""
    + _EDGE_FILTER
    + "    UNION ALL"
    + _EDGE_COLUMNS
    + """
    FROM rollup_hours_pending AS p
    JOIN flow_edges_5m AS f ON f.bucket >= p.hour AND f.bucket < p.hour + interval '1 hour'
    WHERE $1::boolean AND p.hour >= coalesce($2::timestamptz, '-infinity')
      AND p.hour < coalesce($3::timestamptz, 'infinity')
      AND f.bucket >= coalesce($2::timestamptz, '-infinity') AND f.bucket < coalesce($3::timestamptz, 'infinity')"""
    + _EDGE_FILTER
    + "    UNION ALL"
    + _EDGE_COLUMNS
    + """
    FROM flow_edges_5m AS f
    WHERE f.bucket > $4::timestamptz AND f.bucket < $5::timestamptz"""
    + _EDGE_FILTER
    + "    UNION ALL"
    + _EDGE_COLUMNS
    + """
    FROM flow_edges_5m AS f
    WHERE f.bucket >= $6::timestamptz AND f.bucket < $7::timestamptz"""
    + _EDGE_FILTER
    + """)
SELECT src_type, src_namespace, src_name_aggr, dst_type, dst_namespace, dst_name_aggr, dst_port, proto, action,
       reporter, sum(num_flows) AS num_flows, sum(packets) AS packets, sum(bytes) AS bytes
FROM parts
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
"""
)


def graph_args(flow_filter: FlowFilter) -> tuple[Any, ...]:
    """The parameters of :data:`FLOW_GRAPH` for ``flow_filter``."""
    f = flow_filter
    return (*rollup_ranges(f.from_, f.to), f.namespace, f.workload, f.action, f.reporter, f.port, f.proto)


def widen_start(from_: datetime | None) -> datetime | None:
    """The lower bound of the 5-minute buckets that overlap a window starting at ``from_`` (exclusive)."""
    if from_ is None:
        return None
    try:
        return from_ - _BUCKET
    except OverflowError:  # the first moment datetime can hold: every bucket
        return None


async def flow_graph(conn: asyncpg.Connection, flow_filter: FlowFilter) -> FlowGraph:
    """The flow graph of the filtered window, from the rollups: whole hours from the hourly one, the rest
    from the 5-minute one.

    The window is widened to whole 5-minute buckets (flows are bucketed by start time). The rollup has
    no policy traces, so a ``policy`` filter is refused with :class:`ValueError`.
    """
    if flow_filter.policy is not None:
        raise ValueError("the flow graph cannot be filtered by policy")
    async with conn.transaction():
        await conn.execute(READ_SETTINGS)
        rows = await conn.fetch(FLOW_GRAPH, *graph_args(flow_filter))
    nodes: dict[str, GraphNode] = {}
    merged: dict[tuple[Any, ...], tuple[int, int, int, set[str]]] = {}
    for row in rows:
        source = _node(nodes, row["src_type"], row["src_namespace"], row["src_name_aggr"])
        target = _node(nodes, row["dst_type"], row["dst_namespace"], row["dst_name_aggr"])
        key = (source, target, row["dst_port"], row["proto"], row["action"])
        flows_, packets, bytes_ = int(row["num_flows"]), int(row["packets"]), int(row["bytes"])
        previous = merged.get(key)
        if previous is None:
            merged[key] = (flows_, packets, bytes_, {row["reporter"]})
        else:
            previous[3].add(row["reporter"])
            merged[key] = (
                max(previous[0], flows_),
                max(previous[1], packets),
                max(previous[2], bytes_),
                previous[3],
            )
    edges = [
        GraphEdge(source, target, port, proto, action, flows_, packets, bytes_, tuple(sorted(reporters)))
        for (source, target, port, proto, action), (flows_, packets, bytes_, reporters) in merged.items()
    ]
    edges.sort(key=lambda edge: (edge.source, edge.target, edge.dest_port or -1, edge.proto, edge.action))
    return FlowGraph(sorted(nodes.values(), key=lambda node: node.id), edges)


def _node(nodes: dict[str, GraphNode], endpoint_type: str, namespace: str | None, name_aggr: str) -> str:
    kind = _NODE_KINDS.get(endpoint_type, endpoint_type)
    node_id = f"{kind}:{namespace}/{name_aggr}" if namespace else f"{kind}:{name_aggr}"
    if node_id not in nodes:
        nodes[node_id] = GraphNode(node_id, kind, namespace, name_aggr)
        if namespace and f"namespace:{namespace}" not in nodes:
            nodes[f"namespace:{namespace}"] = GraphNode(f"namespace:{namespace}", "namespace", None, namespace)
    return node_id
