"""Calico OSS Goldmane flows (3.30+): one decoded JSON ``Flow`` -> :class:`Flow`.

Goldmane's ``Flow`` message holds a ``Key`` (source and destination name, namespace and type,
destination port and service, protocol, reporter, action, policy trace) and the statistics. It is
read as Go's ``encoding/json`` writes the generated struct (``Key``, ``source_name``, enums as
numbers) and as protobuf JSON writes it (``key``, ``sourceName``, enums by name, 64-bit integers as
text); a ``FlowResult``/``FlowUpdate`` wrapper (``{"flow": {...}}``) is unwrapped. Policy hits may be
strings (``0|tier|gnp:name|allow|0``) or structured ``PolicyHit`` objects.

Goldmane has no per-connection IPs or source ports: those stay None. Protobuf leaves out zero
values, so an absent or zero destination port means "none" and absent counters are 0.
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
    read_int64,
    read_labels,
    read_optional_text,
    read_port,
    read_proto,
    read_text,
)
from ringfence.flows.hits import PROFILE_TIER, PolicyHitError, parse_hit
from ringfence.flows.record import Endpoint, EndpointType, Flow, FlowAction, PolicyHit, Reporter

# Enum values by protobuf name, by number, and (for hand-written JSON) by Calico's flow-log spelling.
_ENDPOINT_TYPES: Final[Mapping[str | int, EndpointType]] = {
    "WorkloadEndpoint": EndpointType.WORKLOAD,
    1: EndpointType.WORKLOAD,
    "HostEndpoint": EndpointType.HOST,
    2: EndpointType.HOST,
    "NetworkSet": EndpointType.NETWORK_SET,
    3: EndpointType.NETWORK_SET,
    "Network": EndpointType.NETWORK,
    4: EndpointType.NETWORK,
    **{member.value: member for member in EndpointType},
}
_REPORTERS: Final[Mapping[str | int, Reporter]] = {
    "Src": Reporter.SOURCE,
    1: Reporter.SOURCE,
    "src": Reporter.SOURCE,
    "Dst": Reporter.DESTINATION,
    2: Reporter.DESTINATION,
    "dst": Reporter.DESTINATION,
}
_ACTIONS: Final[Mapping[str | int, FlowAction]] = {
    "Allow": FlowAction.ALLOW,
    1: FlowAction.ALLOW,
    "allow": FlowAction.ALLOW,
    "Deny": FlowAction.DENY,
    2: FlowAction.DENY,
    "deny": FlowAction.DENY,
}
_HIT_ACTIONS: Final[Mapping[str | int, str]] = {
    "Allow": "allow",
    1: "allow",
    "Deny": "deny",
    2: "deny",
    "Pass": "pass",
    3: "pass",
}
_HIT_KINDS: Final[Mapping[str | int, str]] = {
    "CalicoNetworkPolicy": "np",
    1: "np",
    "GlobalNetworkPolicy": "gnp",
    2: "gnp",
    "StagedNetworkPolicy": "snp",
    3: "snp",
    "StagedGlobalNetworkPolicy": "sgnp",
    4: "sgnp",
    "StagedKubernetesNetworkPolicy": "sknp",
    5: "sknp",
    "NetworkPolicy": "knp",
    6: "knp",
    "ClusterNetworkPolicyAdminTier": "kcnp",
    7: "kcnp",
    "ClusterNetworkPolicyBaselineTier": "kcnp",
    8: "kcnp",
    "Profile": "pro",
    9: "pro",
}
_UNSPECIFIED: Final = frozenset(
    {0, "", "ActionUnspecified", "ReporterUnspecified", "EndpointTypeUnspecified", "KindUnspecified"}
)
_END_OF_TIER_KINDS: Final = frozenset({"EndOfTier", 10})
_NETWORK_NAMES: Final = frozenset({"pub", "pvt"})


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


def _get(message: Mapping[str, Any], snake: str) -> Any:
    """A field by its proto name or its protobuf-JSON (lowerCamelCase) name; MISSING when neither."""
    value = message.get(snake, MISSING)
    if value is MISSING:
        value = message.get(_camel(snake), MISSING)
    return value


def _enum(value: Any, field: str, table: Mapping[str | int, Any]) -> Any:
    # ``type(...) in`` rather than isinstance: ``True`` must not pass for enum number 1.
    if type(value) in (str, int) and value in table:
        return table[value]
    if value is MISSING or value is None or (type(value) in (str, int) and value in _UNSPECIFIED):
        raise missing(field)  # protobuf's zero value: the field was never set
    names = ", ".join(str(key) for key in table if isinstance(key, str) and key[0].isupper())
    raise FlowRecordError(field, f"{value!r} is not one of {names}")


def _count(value: Any, field: str) -> int:
    if value is MISSING or value is None:
        return 0
    count = read_int64(value, field)
    if count < 0:
        raise FlowRecordError(field, f"count {count} is negative")
    return count


def _time(value: Any, field: str) -> int:
    if value is MISSING or value is None:
        raise missing(field)
    seconds = read_int64(value, field)
    if seconds < 0:
        raise FlowRecordError(field, f"time {seconds} is negative")
    return seconds


def parse_goldmane(record: Mapping[str, Any]) -> Flow:
    """Parse one Goldmane flow (``Flow``, or a ``FlowResult``/``FlowUpdate`` wrapping one).

    ``num_flows`` is a lower bound of the connections the record covers: the larger of
    ``num_connections_started`` and ``num_connections_live + num_connections_completed``, at least 1.
    Raises :class:`FlowRecordError`.
    """
    if not isinstance(record, Mapping):
        raise FlowRecordError("", f"a flow record must be a JSON object, found {json_type(record)}")
    prefix = ""
    inner = record.get("flow")
    if isinstance(inner, Mapping) and "Key" not in record and "key" not in record:
        record, prefix = inner, "flow."
    key_name = "key" if "key" in record else "Key"
    key = record.get(key_name)
    if not isinstance(key, Mapping):
        if key is None:
            raise missing(prefix + key_name)
        raise FlowRecordError(prefix + key_name, f"must be an object, found {json_type(key)}")
    key_path = f"{prefix}{key_name}."

    start_time = _time(_get(record, "start_time"), prefix + "start_time")
    end_time = _time(_get(record, "end_time"), prefix + "end_time")
    check_window(start_time, end_time, prefix + "end_time")
    dest_port = read_port(_port_value(_get(key, "dest_port"), key_path + "dest_port"), key_path + "dest_port")
    source = _endpoint(record, key, "source", port=None, prefix=prefix, key_path=key_path)
    dest = _endpoint(record, key, "dest", port=dest_port, prefix=prefix, key_path=key_path)
    service_port = _port_value(_get(key, "dest_service_port"), key_path + "dest_service_port")

    started = _count(_get(record, "num_connections_started"), prefix + "num_connections_started")
    completed = _count(_get(record, "num_connections_completed"), prefix + "num_connections_completed")
    live = _count(_get(record, "num_connections_live"), prefix + "num_connections_live")
    enforced, pending = _policies(_get(key, "policies"), key_path + "policies")
    return Flow(
        start_time=start_time,
        end_time=end_time,
        source=source,
        dest=dest,
        proto=read_proto(_get(key, "proto"), key_path + "proto"),
        reporter=_enum(_get(key, "reporter"), key_path + "reporter", _REPORTERS),
        action=_enum(_get(key, "action"), key_path + "action", _ACTIONS),
        dest_service_namespace=read_optional_text(
            _get(key, "dest_service_namespace"), key_path + "dest_service_namespace"
        ),
        dest_service_name=read_optional_text(_get(key, "dest_service_name"), key_path + "dest_service_name"),
        dest_service_port=read_optional_text(_get(key, "dest_service_port_name"), key_path + "dest_service_port_name"),
        dest_service_port_num=read_port(service_port, key_path + "dest_service_port"),
        bytes_in=_count(_get(record, "bytes_in"), prefix + "bytes_in"),
        bytes_out=_count(_get(record, "bytes_out"), prefix + "bytes_out"),
        packets_in=_count(_get(record, "packets_in"), prefix + "packets_in"),
        packets_out=_count(_get(record, "packets_out"), prefix + "packets_out"),
        num_flows=max(1, started, live + completed),
        num_flows_started=started,
        num_flows_completed=completed,
        enforced_policies=enforced,
        pending_policies=pending,
    )


def _port_value(value: Any, field: str) -> int | None:
    """A port as protobuf writes it: absent or 0 is "none"; text is allowed (int64 in protobuf JSON)."""
    if value is MISSING or value is None:
        return None
    port = read_int64(value, field)
    return port or None


def _endpoint(
    record: Mapping[str, Any],
    key: Mapping[str, Any],
    side: str,
    *,
    port: int | None,
    prefix: str,
    key_path: str,
) -> Endpoint:
    endpoint_type = _enum(_get(key, f"{side}_type"), f"{key_path}{side}_type", _ENDPOINT_TYPES)
    name_aggr = read_text(_get(key, f"{side}_name"), f"{key_path}{side}_name")
    namespace = read_optional_text(_get(key, f"{side}_namespace"), f"{key_path}{side}_namespace")
    if endpoint_type is EndpointType.WORKLOAD and namespace is None:
        raise FlowRecordError(f"{key_path}{side}_namespace", "a workload endpoint needs a namespace")
    if endpoint_type is EndpointType.NETWORK and name_aggr not in _NETWORK_NAMES:
        raise FlowRecordError(f"{key_path}{side}_name", f"a Network endpoint is 'pub' or 'pvt', not {name_aggr!r}")
    return Endpoint(
        type=endpoint_type,
        name_aggr=name_aggr,
        namespace=namespace,
        labels=read_labels(_get(record, f"{side}_labels"), f"{prefix}{side}_labels"),
        port=port,
    )


def _policies(value: Any, field: str) -> tuple[tuple[PolicyHit, ...], tuple[PolicyHit, ...]]:
    if value is MISSING or value is None:
        return (), ()
    if not isinstance(value, Mapping):
        raise FlowRecordError(field, f"must be an object, found {json_type(value)}")
    return (
        _trace(_get(value, "enforced_policies"), f"{field}.enforced_policies"),
        _trace(_get(value, "pending_policies"), f"{field}.pending_policies"),
    )


def _trace(value: Any, field: str) -> tuple[PolicyHit, ...]:
    if value is MISSING or value is None:
        return ()
    if not isinstance(value, list):
        raise FlowRecordError(field, f"must be a list of policy hits, found {json_type(value)}")
    hits: list[PolicyHit] = []
    for position, item in enumerate(value):
        where = f"{field}[{position}]"
        text = item if isinstance(item, str) else _hit_text(item, where)
        try:
            hits.append(parse_hit(text))
        except PolicyHitError as error:
            raise FlowRecordError(where, str(error)) from None
    return tuple(hits)


def _hit_text(hit: Any, field: str) -> str:
    """The Goldmane string of a structured ``PolicyHit`` (then validated by the string parser)."""
    if not isinstance(hit, Mapping):
        raise FlowRecordError(field, f"a policy hit is a string or an object, found {json_type(hit)}")
    action = _enum(_get(hit, "action"), f"{field}.action", _HIT_ACTIONS)
    policy_index = _count(_get(hit, "policy_index"), f"{field}.policy_index")
    rule_index = _get(hit, "rule_index")
    rule_index = 0 if rule_index is MISSING or rule_index is None else read_int64(rule_index, f"{field}.rule_index")
    tier = _get(hit, "tier")
    tier = "" if tier is MISSING or tier is None else tier
    policy = hit
    policy_field = field
    if _get(hit, "kind") in _END_OF_TIER_KINDS:
        # The end of a tier names the policy that selected the flow (its "trigger").
        policy = _get(hit, "trigger")
        policy_field = f"{field}.trigger"
        if not isinstance(policy, Mapping):
            raise FlowRecordError(policy_field, "an EndOfTier hit needs its trigger policy")
    kind = _enum(_get(policy, "kind"), f"{policy_field}.kind", _HIT_KINDS)
    name = read_text(_get(policy, "name"), f"{policy_field}.name")
    namespace = read_optional_text(_get(policy, "namespace"), f"{policy_field}.namespace")
    if not isinstance(tier, str):
        raise FlowRecordError(f"{field}.tier", f"must be a string, found {json_type(tier)}")
    if kind == "pro":
        tier = PROFILE_TIER  # Goldmane leaves a profile's tier empty
    where = f"{namespace}/" if namespace else ""
    return f"{policy_index}|{tier}|{kind}:{where}{name}|{action}|{rule_index}"
