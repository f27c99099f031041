"""Cilium Hubble flows: one ``hubble observe -o json`` line -> :class:`Flow`.

A Hubble flow is one observed packet event, so the result covers one instant (``start_time ==
end_time``) and one connection, with pod names, IPs and ports kept, like an unaggregated Calico
record. The mapping onto Calico's model:

* ``verdict`` FORWARDED and AUDIT (policy in audit mode lets it through) are ``allow``; DROPPED is
  ``deny`` unless the drop reason says it was not policy (a full conntrack table is no verdict).
  Other verdicts (TRACED, TRANSLATED, ERROR, ...) are observations without a verdict and refused.
* ``traffic_direction`` EGRESS was decided at the source (reporter ``src``), INGRESS at the
  destination (``dst``). A reply packet (``is_reply: true``) is turned around so the record
  describes the connection from its initiator, as Calico's flow logs do.
* Endpoints with a pod are ``wep``: the name aggregate is the controller's prefix
  (``frontend-864f4fcdfd-2hhv4`` -> ``frontend-864f4fcdfd-*``, ``db-0`` -> ``db-*``) when the pod has
  a controller (``workloads``, or a ``pod-template-hash``, ``controller-revision-hash`` or job
  label), else the pod name. ``reserved:host`` is the reporting node (``hep``); anything else
  outside a pod (``reserved:world``, remote nodes, the API server, CIDR identities) is ``net`` with
  ``pub``/``pvt`` by address.
* Only ``k8s:`` labels are pod labels; the prefix is stripped. Cilium's own additions are dropped:
  ``io.kubernetes.pod.namespace`` repeats the namespace, ``io.cilium.k8s.namespace.labels.*`` are
  namespace labels (a pod selector must not see them), ``io.cilium.k8s.policy.cluster`` names the
  cluster and ``io.cilium.k8s.policy.serviceaccount`` becomes the service account. Calico's flow
  logs carry only the pod's own labels; keeping these would let a selector such as
  ``has(io.kubernetes.pod.namespace)`` match a flow it never matches on Calico.
* ``destination_names`` (from DNS) are the destination domains. Cilium policy names are not Calico
  tiers, so the policy traces stay empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from ringfence.flows.formats.errors import FlowRecordError
from ringfence.flows.formats.fields import (
    MISSING,
    json_type,
    label_items,
    missing,
    network_name_aggr,
    read_domains,
    read_ip,
    read_optional_text,
    read_port,
    read_text,
)
from ringfence.flows.record import Endpoint, EndpointType, Flow, FlowAction, Reporter

_VERDICTS: Final[Mapping[str, FlowAction]] = {
    "FORWARDED": FlowAction.ALLOW,
    "AUDIT": FlowAction.ALLOW,
    "DROPPED": FlowAction.DENY,
}
_DIRECTIONS: Final[Mapping[str, Reporter]] = {"EGRESS": Reporter.SOURCE, "INGRESS": Reporter.DESTINATION}
_POLICY_DROP_REASONS: Final = frozenset({"POLICY_DENIED", "POLICY_DENY", "AUTH_REQUIRED"})
_L4_PROTOCOLS: Final[Mapping[str, str]] = {
    "TCP": "tcp",
    "UDP": "udp",
    "SCTP": "sctp",
    "ICMPv4": "icmp",
    "ICMPv6": "icmpv6",
}
_PORTED: Final = frozenset({"TCP", "UDP", "SCTP"})
_K8S_SOURCE: Final = "k8s:"
_CILIUM_LABEL_PREFIXES: Final = (
    "io.kubernetes.pod.namespace=",
    "io.cilium.k8s.namespace.labels.",
    "io.cilium.k8s.policy.cluster=",
    "io.cilium.k8s.policy.serviceaccount=",
)
_SERVICE_ACCOUNT_PREFIX: Final = "io.cilium.k8s.policy.serviceaccount="
_CONTROLLER_LABELS: Final = frozenset(
    {"pod-template-hash", "controller-revision-hash", "job-name", "batch.kubernetes.io/job-name"}
)


def parse_hubble(record: Mapping[str, Any]) -> Flow:
    """Parse one Hubble flow (``{"flow": {...}, "node_name": ..., "time": ...}`` or the bare flow)."""
    if not isinstance(record, Mapping):
        raise FlowRecordError("", f"a flow record must be a JSON object, found {json_type(record)}")
    flow = record.get("flow", MISSING)
    prefix = "flow."
    if flow is MISSING:
        flow, prefix = record, ""
    if not isinstance(flow, Mapping):
        raise FlowRecordError("flow", f"must be an object, found {json_type(flow)}")

    raw_time = flow.get("time", MISSING)
    time_field = prefix + "time"
    if raw_time is MISSING or raw_time is None:
        raw_time, time_field = record.get("time", MISSING), "time"
    seconds = _read_time(raw_time, time_field)
    action = _verdict(flow, prefix)
    reporter = _lookup(flow.get("traffic_direction", MISSING), prefix + "traffic_direction", _DIRECTIONS)
    node = read_optional_text(flow.get("node_name", record.get("node_name")), prefix + "node_name")

    proto, source_port, dest_port = _layer4(flow.get("l4", MISSING), prefix + "l4")
    ip = flow.get("IP", MISSING)
    if ip is MISSING or ip is None:
        ip = {}
    elif not isinstance(ip, Mapping):
        raise FlowRecordError(prefix + "IP", f"must be an object, found {json_type(ip)}")
    source_ip = read_ip(ip.get("source"), prefix + "IP.source")
    dest_ip = read_ip(ip.get("destination"), prefix + "IP.destination")
    source = _endpoint(flow, "source", ip=source_ip, port=source_port, node=node, prefix=prefix)
    dest = _endpoint(flow, "destination", ip=dest_ip, port=dest_port, node=node, prefix=prefix)
    names_field, service_field = "destination_names", "destination_service"
    if flow.get("is_reply") is True:
        source, dest = dest, source
        names_field, service_field = "source_names", "source_service"
    service_namespace, service_name = _service(flow.get(service_field), prefix + service_field)
    return Flow(
        start_time=seconds,
        end_time=seconds,
        source=source,
        dest=dest,
        proto=proto,
        reporter=reporter,
        action=action,
        dest_domains=read_domains(flow.get(names_field), prefix + names_field),
        dest_service_namespace=service_namespace,
        dest_service_name=service_name,
        host=node,
        num_flows=1,
    )


def _lookup(value: Any, field: str, table: Mapping[str, Any]) -> Any:
    if type(value) is str and value in table:
        return table[value]
    if value is MISSING or value is None:
        raise missing(field)
    raise FlowRecordError(field, f"{value!r} is not one of {', '.join(table)}")


def _read_time(value: Any, field: str) -> int:
    if value is MISSING or value is None:
        raise missing(field)
    if type(value) is not str:
        raise FlowRecordError(field, f"must be an RFC 3339 time string, found {json_type(value)}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise FlowRecordError(field, f"{value!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise FlowRecordError(field, f"{value!r} has no time zone")
    seconds = int(moment.timestamp())
    if seconds < 0:
        raise FlowRecordError(field, f"time {value!r} is before 1970")
    return seconds


def _verdict(flow: Mapping[str, Any], prefix: str) -> FlowAction:
    verdict = flow.get("verdict", MISSING)
    if type(verdict) is str and verdict not in _VERDICTS:
        raise FlowRecordError(
            prefix + "verdict", f"{verdict!r} is not a policy verdict (expected FORWARDED, AUDIT or DROPPED)"
        )
    action: FlowAction = _lookup(verdict, prefix + "verdict", _VERDICTS)
    reason = flow.get("drop_reason_desc")
    if action is FlowAction.DENY and type(reason) is str and reason not in _POLICY_DROP_REASONS:
        raise FlowRecordError(prefix + "drop_reason_desc", f"dropped for {reason}, not by policy")
    return action


def _layer4(value: Any, field: str) -> tuple[str, int | None, int | None]:
    if value is MISSING or value is None:
        raise missing(field)
    if not isinstance(value, Mapping):
        raise FlowRecordError(field, f"must be an object, found {json_type(value)}")
    for name, proto in _L4_PROTOCOLS.items():
        layer = value.get(name)
        if layer is None:
            continue
        if not isinstance(layer, Mapping):
            raise FlowRecordError(f"{field}.{name}", f"must be an object, found {json_type(layer)}")
        if name not in _PORTED:
            return proto, None, None
        source_port = read_port(layer.get("source_port"), f"{field}.{name}.source_port")
        dest_port = read_port(layer.get("destination_port"), f"{field}.{name}.destination_port")
        if dest_port is None:
            raise missing(f"{field}.{name}.destination_port")
        return proto, source_port, dest_port
    raise FlowRecordError(field, f"holds none of {', '.join(_L4_PROTOCOLS)}")


def _service(value: Any, field: str) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    if not isinstance(value, Mapping):
        raise FlowRecordError(field, f"must be an object, found {json_type(value)}")
    return (
        read_optional_text(value.get("namespace"), f"{field}.namespace"),
        read_optional_text(value.get("name"), f"{field}.name"),
    )


def _endpoint(
    flow: Mapping[str, Any], side: str, *, ip: str | None, port: int | None, node: str | None, prefix: str
) -> Endpoint:
    field = prefix + side
    value = flow.get(side, MISSING)
    if value is MISSING or value is None:
        raise missing(field)
    if not isinstance(value, Mapping):
        raise FlowRecordError(field, f"must be an object, found {json_type(value)}")
    raw_labels = value.get("labels")
    if raw_labels is None:
        raw_labels = []
    elif type(raw_labels) is not list or not all(type(label) is str for label in raw_labels):
        raise FlowRecordError(f"{field}.labels", "must be a list of 'source:key=value' strings")
    pod_name = read_optional_text(value.get("pod_name"), f"{field}.pod_name")
    namespace = read_optional_text(value.get("namespace"), f"{field}.namespace")
    if pod_name is not None:
        if namespace is None:
            raise FlowRecordError(f"{field}.namespace", f"pod {pod_name!r} has no namespace")
        pod_labels = [label[len(_K8S_SOURCE) :] for label in raw_labels if label.startswith(_K8S_SOURCE)]
        service_account = None
        for label in pod_labels:
            if label.startswith(_SERVICE_ACCOUNT_PREFIX):
                service_account = label[len(_SERVICE_ACCOUNT_PREFIX) :] or None
        labels = label_items(
            (label for label in pod_labels if not label.startswith(_CILIUM_LABEL_PREFIXES)), f"{field}.labels"
        )
        return Endpoint(
            type=EndpointType.WORKLOAD,
            name_aggr=_aggregate_pod_name(pod_name, value.get("workloads"), labels, f"{field}.workloads"),
            namespace=namespace,
            name=pod_name,
            labels=labels,
            ip=ip,
            port=port,
            service_account=service_account,
        )
    if namespace is not None:
        raise FlowRecordError(f"{field}.pod_name", f"an endpoint in namespace {namespace!r} needs its pod name")
    if "reserved:host" in raw_labels:
        if node is None:
            raise missing(prefix + "node_name")
        return Endpoint(type=EndpointType.HOST, name_aggr=read_text(node, prefix + "node_name"), ip=ip, port=port)
    if ip is None:
        raise missing(f"{prefix}IP.{'source' if side == 'source' else 'destination'}")
    return Endpoint(type=EndpointType.NETWORK, name_aggr=network_name_aggr(ip), ip=ip, port=port)


def _aggregate_pod_name(pod_name: str, workloads: Any, labels: tuple[tuple[str, str], ...], field: str) -> str:
    """Calico's ``name_aggr`` of a pod: its controller's name prefix with ``*``, or the pod name."""
    if workloads is not None and type(workloads) is not list:
        raise FlowRecordError(field, f"must be a list, found {json_type(workloads)}")
    controlled = bool(workloads) or any(key in _CONTROLLER_LABELS for key, _ in labels)
    base, dash, _ = pod_name.rpartition("-")
    if controlled and dash and base:
        return f"{base}-*"
    return pod_name
