"""From the ``FlowInput`` of ``explainFlow`` to the core's flow record."""

from __future__ import annotations

from typing import TypeVar

from ringfence.flows.record import Endpoint, EndpointType, Flow, FlowAction, Reporter, parse_label_list
from services.api.schema.errors import BadUserInputError
from services.api.schema.flow_types import FlowInput

E = TypeVar("E", EndpointType, Reporter, FlowAction)


def flow_of_input(flow: FlowInput) -> Flow:
    """The record ``flow`` describes; BAD_USER_INPUT naming the field when a value is not one of the allowed."""
    start = int(flow.start_time.timestamp()) if flow.start_time else 0
    end = int(flow.end_time.timestamp()) if flow.end_time else start
    source = Endpoint(
        type=_choice(EndpointType, flow.source_type, "sourceType"),
        name_aggr=flow.source_name_aggr,
        namespace=flow.source_namespace,
        name=flow.source_name,
        labels=parse_label_list(flow.source_labels),
        ip=flow.source_ip,
    )
    dest = Endpoint(
        type=_choice(EndpointType, flow.dest_type, "destType"),
        name_aggr=flow.dest_name_aggr,
        namespace=flow.dest_namespace,
        name=flow.dest_name,
        labels=parse_label_list(flow.dest_labels),
        ip=flow.dest_ip,
        port=flow.dest_port,
    )
    if flow.dest_port is not None and not 0 <= flow.dest_port <= 65535:
        raise BadUserInputError(f"destPort {flow.dest_port} is not a port number", field="flow.destPort")
    return Flow(
        start_time=start,
        end_time=end,
        source=source,
        dest=dest,
        proto=flow.proto.lower(),
        reporter=_choice(Reporter, flow.reporter, "reporter"),
        action=_choice(FlowAction, flow.action, "action"),
        dest_domains=tuple(flow.dest_domains),
        num_flows=flow.num_flows,
        bytes_in=int(flow.bytes_in),
        bytes_out=int(flow.bytes_out),
    )


def _choice(enum: type[E], value: str, field: str) -> E:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise BadUserInputError(f"{field} {value!r} is not one of {allowed}", field=f"flow.{field}") from None
