"""The ``flowTail`` subscription: flows as the collectors store them, with the filters of ``flows``.

Collectors publish each committed batch on Redis (``services.common.flow_tail``), so every API
replica sees every stored flow; each subscriber filters them here exactly as the flow store's
``FlowFilter`` does in SQL. The tail starts at subscription time and never ends by itself.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError

from services.api.schema.context import Info
from services.api.schema.errors import ApiError
from services.api.schema.flow_fields import store_filter
from services.api.schema.flow_types import Flow, FlowFilter
from services.common import flow_tail
from services.common.db.flow_reads import FlowFilter as StoreFilter

TAIL_HELP = (
    "Flows as the collectors store them, from now on, with the filters of flows (a live tail: nothing stored "
    "earlier is replayed)."
)


class TailInterruptedError(ApiError):
    code = "TAIL_INTERRUPTED"


def matches(flow: Mapping[str, Any], where: StoreFilter) -> bool:
    """Whether a published flow passes ``where``, as ``services.common.db.flow_reads`` filters in SQL."""
    if where.from_ is not None or where.to is not None:
        start = datetime.fromisoformat(flow["startTime"])
        if (where.from_ is not None and start < where.from_) or (where.to is not None and start >= where.to):
            return False
    source_ns, dest_ns = flow.get("sourceNamespace"), flow.get("destNamespace")
    if where.namespace is not None and where.namespace not in (source_ns, dest_ns):
        return False
    if where.workload is not None:
        on_source = flow["sourceNameAggr"] == where.workload and where.namespace in (None, source_ns)
        on_dest = flow["destNameAggr"] == where.workload and where.namespace in (None, dest_ns)
        if not (on_source or on_dest):
            return False
    if where.action is not None and flow["action"] != where.action:
        return False
    if where.reporter is not None and flow["reporter"] != where.reporter:
        return False
    if where.port is not None and flow.get("destPort") != where.port:
        return False
    if where.proto is not None and flow["proto"] != where.proto:
        return False
    if where.policy is not None:
        return any(
            name == where.policy and where.policy_namespace in (None, namespace)
            for namespace, name in flow.get("hits") or ()
        )
    return True


def flow_from_event(flow: Mapping[str, Any]) -> Flow:
    """A flow of a Redis event (the GraphQL ``Flow`` fields in camelCase) as the GraphQL type."""
    return Flow(
        start_time=datetime.fromisoformat(flow["startTime"]),
        end_time=datetime.fromisoformat(flow["endTime"]),
        reporter=flow["reporter"],
        action=flow["action"],
        proto=flow["proto"],
        dest_port=flow.get("destPort"),
        source_type=flow["sourceType"],
        source_namespace=flow.get("sourceNamespace"),
        source_name_aggr=flow["sourceNameAggr"],
        dest_type=flow["destType"],
        dest_namespace=flow.get("destNamespace"),
        dest_name_aggr=flow["destNameAggr"],
        dest_domains=list(flow.get("destDomains") or []),
        num_flows=int(flow.get("numFlows", 0)),
        bytes_in=float(flow.get("bytesIn", 0)),
        bytes_out=float(flow.get("bytesOut", 0)),
        policies=list(flow.get("policies") or []),
        pending_policies=list(flow.get("pendingPolicies") or []),
        source_name=flow.get("sourceName"),
        dest_name=flow.get("destName"),
        source_labels=list(flow.get("sourceLabels") or []),
        dest_labels=list(flow.get("destLabels") or []),
        source_ip=flow.get("sourceIp"),
        dest_ip=flow.get("destIp"),
        packets_in=float(flow.get("packetsIn", 0)),
        packets_out=float(flow.get("packetsOut", 0)),
        dest_service_name=flow.get("destServiceName"),
        dest_service_namespace=flow.get("destServiceNamespace"),
    )


async def flow_tail_field(
    info: Info,
    filter: FlowFilter | None = None,  # noqa: A002 - the schema's name, as on flows
) -> AsyncGenerator[Flow, None]:
    where = store_filter(filter)
    info.context.caller  # noqa: B018 - authenticated callers only (every role reads flows)
    try:
        async for batch in flow_tail.follow(info.context.services.redis):
            for flow in batch:
                if matches(flow, where):
                    yield flow_from_event(flow)
    except RedisError as error:
        raise TailInterruptedError(f"the flow tail lost Redis: {type(error).__name__}") from None
