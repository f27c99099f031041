"""Calico Enterprise ``flows.log``: one decoded JSON line -> :class:`Flow`.

This is the collector's hot path (100k+ records/s per core), so it reads fields with plain ``dict``
look-ups and type checks, interns repeated strings and caches endpoints, labels and traces; no
regular expression runs per field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ringfence.flows.formats.errors import FlowRecordError
from ringfence.flows.formats.fields import (
    MISSING,
    check_window,
    json_type,
    missing,
    read_count,
    read_domains,
    read_ip,
    read_labels,
    read_optional_text,
    read_port,
    read_proto,
    read_text,
    read_time,
    read_trace,
)
from ringfence.flows.record import (
    Endpoint,
    EndpointType,
    Flow,
    FlowAction,
    PolicyHit,
    Reporter,
)

SERVICE_ACCOUNT_LABEL: Final = "projectcalico.org/serviceaccount"
"""The label an endpoint's service account is read from, when the log kept it."""

NETWORK_NAME_AGGRS: Final = frozenset({"pub", "pvt"})

_ENDPOINT_CACHE_SIZE: Final = 65536
_ENDPOINTS: dict[tuple[Any, ...], Endpoint] = {}
"""Endpoints by their raw field values: aggregated logs repeat a few hundred endpoints endlessly."""

_ENDPOINT_TYPES: Final = {member.value: member for member in EndpointType}
_REPORTERS: Final = {member.value: member for member in Reporter}
_ACTIONS: Final = {member.value: member for member in FlowAction}

# Field names of each side, spelled once: building them per record would cost an f-string each.
_SOURCE_FIELDS: Final = tuple(
    f"source_{name}" for name in ("type", "name_aggr", "namespace", "name", "labels", "ip", "port")
)
_DEST_FIELDS: Final = tuple(
    f"dest_{name}" for name in ("type", "name_aggr", "namespace", "name", "labels", "ip", "port")
)
# Counters in the order Flow takes them, with the value an absent counter stands for.
_COUNTERS: Final = (
    ("bytes_in", 0),
    ("bytes_out", 0),
    ("packets_in", 0),
    ("packets_out", 0),
    ("num_flows", 1),
    ("num_flows_started", 0),
    ("num_flows_completed", 0),
    ("http_requests_allowed_in", 0),
    ("http_requests_denied_in", 0),
)


def parse_calico(record: Mapping[str, Any]) -> Flow:
    """Parse one Calico Enterprise flow-log record (a decoded ``flows.log`` JSON line).

    ``-`` means "none" for names, namespaces and service fields; null IPs and ports were aggregated
    away. ``policies`` may hold ``enforced_policies`` and ``pending_policies`` (``transit_policies``
    is not kept) or, in older logs, only ``all_policies``, which is then the enforced trace.
    Counters default to 0 (``num_flows`` to 1) when absent. Raises :class:`FlowRecordError`.
    """
    if type(record) is not dict and not isinstance(record, Mapping):
        raise FlowRecordError("", f"a flow record must be a JSON object, found {json_type(record)}")
    get = record.get
    start_time = get("start_time")
    if type(start_time) is not int or start_time < 0:
        start_time = read_time(get("start_time", MISSING), "start_time")
    end_time = get("end_time")
    if type(end_time) is not int or end_time < 0:
        end_time = read_time(get("end_time", MISSING), "end_time")
    check_window(start_time, end_time, "end_time")
    source = _endpoint(record, _SOURCE_FIELDS)
    dest = _endpoint(record, _DEST_FIELDS)

    raw_reporter = get("reporter", MISSING)
    reporter = _REPORTERS.get(raw_reporter) if type(raw_reporter) is str else None
    if reporter is None:
        raise _enum_error(raw_reporter, "reporter", _REPORTERS)
    raw_action = get("action", MISSING)
    action = _ACTIONS.get(raw_action) if type(raw_action) is str else None
    if action is None:
        raise _enum_error(raw_action, "action", _ACTIONS)

    enforced, pending = _policies(get("policies"))
    service_port = get("dest_service_port")
    service_port_num = read_port(get("dest_service_port_num"), "dest_service_port_num")
    if type(service_port) is int:
        # Some exporters write the service port number here instead of its name.
        if service_port_num is None:
            service_port_num = read_port(service_port, "dest_service_port")
        service_port = None
    counts = [
        value if type(value) is int and value >= 0 else read_count(value, field, default)
        for field, default in _COUNTERS
        for value in (get(field),)
    ]
    return Flow(
        start_time=start_time,
        end_time=end_time,
        source=source,
        dest=dest,
        proto=read_proto(get("proto", MISSING), "proto"),
        reporter=reporter,
        action=action,
        dest_domains=read_domains(get("dest_domains"), "dest_domains"),
        dest_service_namespace=read_optional_text(get("dest_service_namespace"), "dest_service_namespace"),
        dest_service_name=read_optional_text(get("dest_service_name"), "dest_service_name"),
        dest_service_port=read_optional_text(service_port, "dest_service_port"),
        dest_service_port_num=service_port_num,
        host=read_optional_text(get("host"), "host"),
        bytes_in=counts[0],
        bytes_out=counts[1],
        packets_in=counts[2],
        packets_out=counts[3],
        num_flows=counts[4],
        num_flows_started=counts[5],
        num_flows_completed=counts[6],
        http_requests_allowed_in=counts[7],
        http_requests_denied_in=counts[8],
        enforced_policies=enforced,
        pending_policies=pending,
    )


def _enum_error(value: Any, field: str, allowed: Mapping[str, object]) -> FlowRecordError:
    if value is None or value is MISSING:
        return missing(field)
    return FlowRecordError(field, f"{value!r} is not one of {', '.join(allowed)}")


def _endpoint(record: Mapping[str, Any], fields: tuple[str, ...]) -> Endpoint:
    get = record.get
    type_field, aggr_field, namespace_field, name_field, labels_field, ip_field, port_field = fields
    raw_labels = get(labels_field)
    labels_key: tuple[Any, ...] | None = None
    if type(raw_labels) is dict:
        inner = raw_labels.get("labels")
        if type(inner) is list:
            labels_key = tuple(inner)
    elif raw_labels is None:
        labels_key = ()
    port = get(port_field)
    if labels_key is not None and (port is None or type(port) is int):
        # The raw values are the key: equal raw values give an equal endpoint, and only values of
        # the expected types get here (``True == 1`` must not pass for a port). Errors are not cached.
        key = (
            get(type_field),
            get(aggr_field),
            get(namespace_field),
            get(name_field),
            labels_key,
            get(ip_field),
            port,
        )
        try:
            endpoint = _ENDPOINTS.get(key)
        except TypeError:  # an unhashable value: a wrong type, reported by the full read below
            return _read_endpoint(record, fields)
        if endpoint is None:
            endpoint = _read_endpoint(record, fields)
            if len(_ENDPOINTS) >= _ENDPOINT_CACHE_SIZE:
                _ENDPOINTS.clear()
            _ENDPOINTS[key] = endpoint
        return endpoint
    return _read_endpoint(record, fields)


def _read_endpoint(record: Mapping[str, Any], fields: tuple[str, ...]) -> Endpoint:
    get = record.get
    type_field, aggr_field, namespace_field, name_field, labels_field, ip_field, port_field = fields
    raw_type = get(type_field, MISSING)
    endpoint_type = _ENDPOINT_TYPES.get(raw_type) if type(raw_type) is str else None
    if endpoint_type is None:
        raise _enum_error(raw_type, type_field, _ENDPOINT_TYPES)
    name_aggr = read_text(get(aggr_field, MISSING), aggr_field)
    namespace = read_optional_text(get(namespace_field), namespace_field)
    if endpoint_type is EndpointType.WORKLOAD and namespace is None:
        raise FlowRecordError(namespace_field, "a workload endpoint (wep) needs a namespace")
    if endpoint_type is EndpointType.NETWORK and name_aggr not in NETWORK_NAME_AGGRS:
        raise FlowRecordError(aggr_field, f"a network endpoint (net) is 'pub' or 'pvt', not {name_aggr!r}")
    labels = read_labels(get(labels_field), labels_field)
    service_account = None
    for key, value in labels:
        if key == SERVICE_ACCOUNT_LABEL:
            service_account = value or None
    return Endpoint(
        type=endpoint_type,
        name_aggr=name_aggr,
        namespace=namespace,
        name=read_optional_text(get(name_field), name_field),
        labels=labels,
        ip=read_ip(get(ip_field), ip_field),
        port=read_port(get(port_field), port_field),
        service_account=service_account,
    )


def _policies(value: Any) -> tuple[tuple[PolicyHit, ...], tuple[PolicyHit, ...]]:
    if value is None:
        return (), ()
    if type(value) is not dict and not isinstance(value, Mapping):
        raise FlowRecordError("policies", f"must be an object, found {json_type(value)}")
    if "enforced_policies" in value or "pending_policies" in value:
        return (
            read_trace(value.get("enforced_policies"), "policies.enforced_policies"),
            read_trace(value.get("pending_policies"), "policies.pending_policies"),
        )
    return read_trace(value.get("all_policies"), "policies.all_policies"), ()
