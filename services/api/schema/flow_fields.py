"""Resolvers of the flow fields of Query (flows, flowGraph, policyBoard) over the flow store's reads."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Annotated, Final

import strawberry

from ringfence import model
from ringfence.flows.hits import format_hit
from ringfence.flows.record import Flow as FlowRecord
from services.api.documents import POLICY_TYPES
from services.api.schema.board import PolicyKey, board_counts
from services.api.schema.context import Info
from services.api.schema.errors import BadUserInputError
from services.api.schema.flow_types import (
    BoardPolicy,
    BoardTier,
    Flow,
    FlowConnection,
    FlowEdge,
    FlowFilter,
    FlowGraph,
    FlowGraphEdge,
    FlowNode,
    PolicyBoard,
    flow_from_record,
)
from services.api.schema.jobs import PageInfo
from services.api.schema.pagination import MAX_FLOW_PAGE, check_page_size
from services.api.schema.types import Policy, Tier, policy_sort_key, tier_sort_key
from services.common.db import flow_reads

FLOWS_HELP: Final = "Flow records matching the filter, newest first, a page at a time."
GRAPH_HELP: Final = "Namespaces, workloads and networks with the traffic between them (per port and verdict)."
BOARD_HELP: Final = (
    "Per tier, policy and rule: flows allowed, denied and passed in [from, to) (enforced and staged policies; "
    "whole 5-minute buckets)."
)
INT32_MAX: Final = 2**31 - 1  # GraphQL's Int; larger sums are clamped


def store_filter(flow_filter: FlowFilter | None) -> flow_reads.FlowFilter:
    """The store's filter for the GraphQL one (BAD_USER_INPUT for an inverted window)."""
    if flow_filter is None:
        return flow_reads.FlowFilter()
    if flow_filter.from_ and flow_filter.to and flow_filter.from_ >= flow_filter.to:
        raise BadUserInputError("filter.from must be before filter.to", field="filter.from")
    return flow_reads.FlowFilter(
        namespace=flow_filter.namespace,
        workload=flow_filter.workload,
        action=flow_filter.action,
        reporter=flow_filter.reporter,
        from_=flow_filter.from_,
        to=flow_filter.to,
        port=flow_filter.dest_port,
        proto=flow_filter.proto,
        policy=flow_filter.policy,
        policy_namespace=flow_filter.policy_namespace,
    )


def flow_of(record: FlowRecord) -> Flow:
    """The GraphQL flow of a stored record (traces as Enterprise hit strings)."""
    return flow_from_record(
        record,
        policies=[format_hit(hit) for hit in record.enforced_policies],
        pending=[format_hit(hit) for hit in record.pending_policies],
    )


async def flows(
    info: Info,
    filter: FlowFilter | None = None,  # noqa: A002 - the schema's name
    first: int | None = 100,
    after: str | None = None,
) -> FlowConnection:
    size = check_page_size(100 if first is None else first, MAX_FLOW_PAGE)
    where = store_filter(filter)
    pool = info.context.services.pool
    async with pool.acquire() as conn:
        try:
            page = await flow_reads.query_flows(conn, where, size, after)
        except flow_reads.CursorError:
            raise BadUserInputError(f"after: {after!r} is not a cursor of this connection", field="after") from None

    async def count() -> int:
        async with pool.acquire() as conn:
            return min(await flow_reads.count_flows(conn, where), INT32_MAX)

    return FlowConnection(
        edges=[FlowEdge(node=flow_of(item.flow), cursor=item.cursor) for item in page.items],
        page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        counter=count,
    )


async def flow_graph(info: Info, filter: FlowFilter | None = None) -> FlowGraph:  # noqa: A002 - the schema's name
    where = store_filter(filter)
    if where.policy is not None:
        raise BadUserInputError("the flow graph cannot be filtered by policy", field="filter.policy")
    async with info.context.services.pool.acquire() as conn:
        graph = await flow_reads.flow_graph(conn, where)
    return FlowGraph(
        nodes=[
            FlowNode(id=strawberry.ID(node.id), kind=node.kind, namespace=node.namespace, name=node.name)
            for node in graph.nodes
        ],
        edges=[
            FlowGraphEdge(
                source=strawberry.ID(edge.source),
                target=strawberry.ID(edge.target),
                dest_port=edge.dest_port,
                proto=edge.proto,
                action=edge.action,
                num_flows=min(edge.num_flows, INT32_MAX),
                packets=float(edge.packets),
                bytes=float(edge.bytes),
                reporters=list(edge.reporters),
            )
            for edge in graph.edges
        ],
    )


async def policy_board(
    info: Info,
    from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
    to: datetime | None = None,
) -> PolicyBoard:
    counts = await board_counts(info, from_, to)
    snapshot = await info.context.snapshot()
    tiers = {tier.name: tier for tier in snapshot.tiers()}
    policies: dict[str, list[BoardPolicy]] = defaultdict(list)
    listed: set[PolicyKey] = set()
    for entry in snapshot:
        resource = entry.resource
        if isinstance(resource, POLICY_TYPES):
            key = (entry.stored.kind, entry.stored.namespace, entry.stored.name)
            listed.add(key)
            policies[resource.tier].append(
                counts.board_policy(key, staged=resource.staged, order=Policy.from_entry(entry).order)
            )
    for key in counts.keys() - listed:  # policies gone from the store that still have flows in the window
        policies[counts.tier_of[key]].append(counts.board_policy(key, staged=counts.staged[key], order=None))
    tier_list = [Tier.from_tier(tier, None) for tier in tiers.values()]
    tier_list += [Tier.from_tier(model.Tier(model.ObjectMeta(name)), None) for name in policies if name not in tiers]
    return PolicyBoard(
        tiers=[
            BoardTier(
                name=tier.name,
                order=tier.order,
                policies=sorted(policies.get(tier.name, []), key=policy_sort_key),
            )
            for tier in sorted(tier_list, key=tier_sort_key)
        ],
        from_=from_,
        to=to,
    )
