"""GraphQL types for flows: records, filters, the flow graph, the policy board, verdicts and previews."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

import strawberry

from ringfence.flows.record import Flow as FlowRecord
from services.api.schema.jobs import PageInfo


@strawberry.type(description="One aggregated flow record, as Calico's flow logs describe it.")
class Flow:
    start_time: datetime
    end_time: datetime
    reporter: str = strawberry.field(description="src, dst or fwd")
    action: str = strawberry.field(description="allow or deny")
    proto: str
    dest_port: int | None
    source_type: str = strawberry.field(description="wep, hep, ns or net")
    source_namespace: str | None
    source_name_aggr: str
    dest_type: str
    dest_namespace: str | None
    dest_name_aggr: str
    dest_domains: list[str]
    num_flows: int
    bytes_in: float
    bytes_out: float
    policies: list[str] = strawberry.field(description="The enforced trace: index|tier|name|action|ruleIndex")
    pending_policies: list[str] = strawberry.field(description="The staged trace (pending_policies)")
    source_name: str | None = None
    dest_name: str | None = None
    source_labels: list[str] = strawberry.field(default_factory=list, description="k=v")
    dest_labels: list[str] = strawberry.field(default_factory=list, description="k=v")
    source_ip: str | None = None
    dest_ip: str | None = None
    packets_in: float = 0
    packets_out: float = 0
    dest_service_name: str | None = None
    dest_service_namespace: str | None = None


@strawberry.type
class FlowEdge:
    node: Flow
    cursor: str


@strawberry.type(description="A page of flows, newest first (Relay style).")
class FlowConnection:
    edges: list[FlowEdge]
    page_info: PageInfo
    counter: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many flows match the filter (counted only when asked: prefer narrow windows).")
    async def total_count(self) -> int:
        return await self.counter()


@strawberry.input(description="Which flows: every given criterion must hold.")
class FlowFilter:
    namespace: str | None = strawberry.field(default=None, description="Source or destination namespace")
    workload: str | None = strawberry.field(
        default=None, description="Source or destination name_aggr (on the side in namespace when both are given)"
    )
    action: str | None = strawberry.field(default=None, description="allow or deny")
    reporter: str | None = strawberry.field(default=None, description="src, dst or fwd")
    from_: datetime | None = strawberry.field(default=None, name="from", description="Start time, inclusive")
    to: datetime | None = strawberry.field(default=None, description="Start time, exclusive")
    dest_port: int | None = None
    proto: str | None = strawberry.field(default=None, description="tcp, udp, icmp, ... (lower case)")
    policy: str | None = strawberry.field(
        default=None,
        description="A policy the enforced or staged trace hits, named as flow logs do (platform.twilio-integration)",
    )
    policy_namespace: str | None = strawberry.field(default=None, description="The namespace of that policy")


@strawberry.type(description="A namespace, workload, network or network set of the flow graph.")
class FlowNode:
    id: strawberry.ID
    kind: str = strawberry.field(description="namespace, workload, network or networkset")
    namespace: str | None
    name: str


@strawberry.type(description="Traffic from one node to another on one port, with one verdict.")
class FlowGraphEdge:
    source: strawberry.ID
    target: strawberry.ID
    dest_port: int | None
    proto: str
    action: str
    num_flows: int
    packets: float = 0
    bytes: float = 0
    reporters: list[str] = strawberry.field(
        default_factory=list, description="Who reported it; counts are the larger report's, not their sum"
    )


@strawberry.type
class FlowGraph:
    nodes: list[FlowNode]
    edges: list[FlowGraphEdge]


@strawberry.type(description="Flow counts of one rule (ruleIndex -1: the end-of-tier action).")
class BoardRule:
    rule_index: int | None = strawberry.field(description="-1: the end-of-tier action; null: older logs without it")
    allowed: int
    denied: int
    passed: int


@strawberry.type(description="Flow counts of one policy over the board's window.")
class BoardPolicy:
    kind: str
    name: str
    namespace: str | None
    staged: bool
    allowed: int
    denied: int
    passed: int
    order: float | None = None
    source: str = strawberry.field(
        default="none", description="recorded (flow-log traces), evaluated (by the workers) or none (no flows)"
    )
    rules: list[BoardRule] = strawberry.field(default_factory=list)


@strawberry.type
class BoardTier:
    name: str
    order: float | None
    policies: list[BoardPolicy]


@strawberry.type(description="Tiers, policies and rules with the flows they allowed, denied and passed.")
class PolicyBoard:
    tiers: list[BoardTier]
    from_: datetime | None = strawberry.field(name="from")
    to: datetime | None


@strawberry.input(description="A flow to evaluate: Flow's fields plus labels and addresses.")
class FlowInput:
    source_type: str = "wep"
    source_namespace: str | None = None
    source_name_aggr: str = "-"
    source_name: str | None = None
    source_labels: list[str] = strawberry.field(default_factory=list, description="k=v")
    source_ip: str | None = None
    dest_type: str = "wep"
    dest_namespace: str | None = None
    dest_name_aggr: str = "-"
    dest_name: str | None = None
    dest_labels: list[str] = strawberry.field(default_factory=list, description="k=v")
    dest_ip: str | None = None
    dest_port: int | None = None
    dest_domains: list[str] = strawberry.field(default_factory=list)
    proto: str = "tcp"
    reporter: str = "src"
    action: str = "allow"
    start_time: datetime | None = None
    end_time: datetime | None = None
    num_flows: int = 1
    bytes_in: float = 0
    bytes_out: float = 0
    policies: list[str] = strawberry.field(default_factory=list)


@strawberry.type(description="What the policies decide for a flow, and the trace of how.")
class FlowVerdict:
    action: str
    staged_action: str
    trace: list[str]
    staged_trace: list[str]


@strawberry.input(description="A resource to delete in a preview.")
class ResourceRef:
    kind: str
    name: str
    namespace: str | None = None


@strawberry.type
class ImpactProgress:
    processed: int
    total: int


@strawberry.type(description="A flow whose verdict the change would change.")
class ImpactedFlow:
    flow: Flow
    before: str
    after: str
    before_trace: list[str]
    after_trace: list[str]
    change: str = strawberry.field(
        default="changed", description="What the change does to it: the worker's class (newly_denied, uncertain, ...)"
    )


@strawberry.type
class ImpactSummary:
    examined: int
    changed: int
    newly_denied: int
    newly_allowed: int
    uncertain: int


ImpactEvent = Annotated[
    ImpactProgress | ImpactedFlow | ImpactSummary,
    strawberry.union("ImpactEvent", description="Progress, changed flows, then one summary; the stream ends after it"),
]


def flow_from_record(flow: FlowRecord, *, policies: list[str], pending: list[str]) -> Flow:
    """A GraphQL flow from the core's record and its traces as hit strings."""
    return Flow(
        start_time=datetime.fromtimestamp(flow.start_time, UTC),
        end_time=datetime.fromtimestamp(flow.end_time, UTC),
        reporter=flow.reporter.value,
        action=flow.action.value,
        proto=flow.proto,
        dest_port=flow.dest.port,
        source_type=flow.source.type.value,
        source_namespace=flow.source.namespace,
        source_name_aggr=flow.source.name_aggr,
        dest_type=flow.dest.type.value,
        dest_namespace=flow.dest.namespace,
        dest_name_aggr=flow.dest.name_aggr,
        dest_domains=list(flow.dest_domains),
        num_flows=flow.num_flows,
        bytes_in=float(flow.bytes_in),
        bytes_out=float(flow.bytes_out),
        policies=policies,
        pending_policies=pending,
        source_name=flow.source.name,
        dest_name=flow.dest.name,
        source_labels=[f"{key}={value}" for key, value in flow.source.labels],
        dest_labels=[f"{key}={value}" for key, value in flow.dest.labels],
        source_ip=flow.source.ip,
        dest_ip=flow.dest.ip,
        packets_in=float(flow.packets_in),
        packets_out=float(flow.packets_out),
        dest_service_name=flow.dest_service_name,
        dest_service_namespace=flow.dest_service_namespace,
    )
