"""Hubble flows mapped onto Calico's model: verdicts, directions, endpoints, labels and refusals."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from ringfence.flows.formats import FlowRecordError, parse_hubble
from ringfence.flows.record import Endpoint, EndpointType, Flow, FlowAction, Reporter

SAMPLE = Path(__file__).parent.parent / "data" / "flows" / "hubble.jsonl"
DELETE = object()

FRONTEND: dict[str, Any] = {
    "ID": 1834,
    "identity": 21834,
    "namespace": "storefront",
    "labels": [
        "k8s:app=frontend",
        "k8s:io.cilium.k8s.namespace.labels.twilio=allowed",
        "k8s:io.cilium.k8s.policy.cluster=default",
        "k8s:io.cilium.k8s.policy.serviceaccount=frontend",
        "k8s:io.kubernetes.pod.namespace=storefront",
    ],
    "pod_name": "frontend-864f4fcdfd-2hhv4",
    "workloads": [{"name": "frontend", "kind": "Deployment"}],
}
MICROSERVICE1: dict[str, Any] = {
    "ID": 211,
    "identity": 40211,
    "namespace": "storefront",
    "labels": ["k8s:app=microservice1", "k8s:io.kubernetes.pod.namespace=storefront"],
    "pod_name": "microservice1-7c9d8f6b5d-x7k2p",
    "workloads": [{"name": "microservice1", "kind": "Deployment"}],
}


def hubble(**changes: Any) -> dict[str, Any]:
    """A forwarded SYN frontend -> microservice1 seen at egress, with ``changes`` applied to ``flow``."""
    flow: dict[str, Any] = {
        "time": "2024-06-13T00:00:03.123456789Z",
        "verdict": "FORWARDED",
        "IP": {"source": "10.244.1.12", "destination": "10.244.1.13", "ipVersion": "IPv4"},
        "l4": {"TCP": {"source_port": 52814, "destination_port": 8080, "flags": {"SYN": True}}},
        "source": copy.deepcopy(FRONTEND),
        "destination": copy.deepcopy(MICROSERVICE1),
        "Type": "L3_L4",
        "node_name": "node-a",
        "traffic_direction": "EGRESS",
        "is_reply": False,
        "destination_service": {"name": "microservice1", "namespace": "storefront"},
    }
    for name, value in changes.items():
        if value is DELETE:
            flow.pop(name, None)
        else:
            flow[name] = value
    record = {"flow": flow, "node_name": "node-a", "time": "2024-06-13T00:00:03.123456789Z"}
    if changes.get("node_name") is DELETE:
        del record["node_name"]
    return record


def test_a_forwarded_egress_flow_reads_every_field():
    assert parse_hubble(hubble()) == Flow(
        start_time=1718236803,
        end_time=1718236803,
        source=Endpoint(
            type=EndpointType.WORKLOAD,
            name_aggr="frontend-864f4fcdfd-*",
            namespace="storefront",
            name="frontend-864f4fcdfd-2hhv4",
            labels=(("app", "frontend"),),
            ip="10.244.1.12",
            port=52814,
            service_account="frontend",
        ),
        dest=Endpoint(
            type=EndpointType.WORKLOAD,
            name_aggr="microservice1-7c9d8f6b5d-*",
            namespace="storefront",
            name="microservice1-7c9d8f6b5d-x7k2p",
            labels=(("app", "microservice1"),),
            ip="10.244.1.13",
            port=8080,
        ),
        proto="tcp",
        reporter=Reporter.SOURCE,
        action=FlowAction.ALLOW,
        dest_service_namespace="storefront",
        dest_service_name="microservice1",
        host="node-a",
        num_flows=1,
    )


def test_every_sample_line_parses():
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 10
    flows = [parse_hubble(json.loads(line)) for line in lines]
    assert {flow.action for flow in flows} == {FlowAction.ALLOW, FlowAction.DENY}
    assert {flow.reporter for flow in flows} == {Reporter.SOURCE, Reporter.DESTINATION}
    assert {flow.proto for flow in flows} == {"tcp", "udp", "icmp"}
    assert ("api.twilio.com",) in {flow.dest_domains for flow in flows}
    assert {flow.source.type for flow in flows} == {EndpointType.WORKLOAD, EndpointType.HOST}


def test_a_reply_packet_describes_the_connection_from_its_initiator():
    reply = hubble(
        IP={"source": "10.244.1.13", "destination": "10.244.1.12"},
        l4={"TCP": {"source_port": 8080, "destination_port": 52814}},
        source=copy.deepcopy(MICROSERVICE1),
        destination=copy.deepcopy(FRONTEND),
        is_reply=True,
        destination_service=DELETE,
        source_service={"name": "microservice1", "namespace": "storefront"},
    )
    flow = parse_hubble(reply)
    original = parse_hubble(hubble())
    assert (flow.source, flow.dest) == (original.source, original.dest)
    assert flow.dest_service_name == "microservice1"
    assert flow.reporter is Reporter.SOURCE


@pytest.mark.parametrize(
    ("pod_name", "workloads", "labels", "name_aggr"),
    [
        ("frontend-864f4fcdfd-2hhv4", [{"name": "frontend", "kind": "Deployment"}], [], "frontend-864f4fcdfd-*"),
        ("db-0", [{"name": "db", "kind": "StatefulSet"}], [], "db-*"),
        ("fluent-bit-x7k2p", [{"name": "fluent-bit", "kind": "DaemonSet"}], [], "fluent-bit-*"),
        ("logging-7d4f5b6c8b-vb9tn", None, ["k8s:pod-template-hash=7d4f5b6c8b"], "logging-7d4f5b6c8b-*"),
        ("backup-28612345-abcde", None, ["k8s:batch.kubernetes.io/job-name=backup-28612345"], "backup-28612345-*"),
        ("web-1", None, ["k8s:controller-revision-hash=web-6d4b9f"], "web-*"),
        # no controller: a bare pod keeps its own name
        ("debug-shell", None, ["k8s:run=debug-shell"], "debug-shell"),
        ("frontend-864f4fcdfd-2hhv4", [], [], "frontend-864f4fcdfd-2hhv4"),
        ("standalone", [{"name": "x", "kind": "Deployment"}], [], "standalone"),
    ],
)
def test_pod_names_aggregate_to_their_controller_prefix(pod_name, workloads, labels, name_aggr):
    source: dict[str, Any] = {"namespace": "storefront", "pod_name": pod_name, "labels": labels}
    if workloads is not None:
        source["workloads"] = workloads
    flow = parse_hubble(hubble(source=source))
    assert flow.source.name_aggr == name_aggr
    assert flow.source.name == pod_name


def test_only_the_pods_own_labels_are_kept():
    source = copy.deepcopy(FRONTEND)
    source["labels"] += [
        "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=storefront",
        "k8s:tier=web",
        "k8s:version=1.2=beta",
        "reserved:init",
        "container:id=abc",
        "cidr:10.0.0.0/8",
    ]
    endpoint = parse_hubble(hubble(source=source)).source
    assert endpoint.labels == (("app", "frontend"), ("tier", "web"), ("version", "1.2=beta"))
    assert endpoint.service_account == "frontend"


@pytest.mark.parametrize(
    ("ip", "name_aggr"),
    [
        ("54.172.60.2", "pub"),
        ("10.0.3.4", "pvt"),
        ("172.20.1.1", "pvt"),
        ("172.32.0.1", "pub"),
        ("192.168.10.4", "pvt"),
        ("2600:1f18::1", "pub"),
        ("fd12:3456::1", "pvt"),
    ],
)
def test_addresses_outside_the_cluster_are_public_or_private(ip, name_aggr):
    flow = parse_hubble(
        hubble(
            destination={"identity": 2, "labels": ["reserved:world"]}, IP={"source": "10.244.1.12", "destination": ip}
        )
    )
    assert (flow.dest.type, flow.dest.name_aggr, flow.dest.ip) == (EndpointType.NETWORK, name_aggr, ip)
    assert flow.dest.namespace is None


def test_the_reporting_host_is_a_host_endpoint_named_after_the_node():
    flow = parse_hubble(
        hubble(source={"identity": 1, "labels": ["reserved:host"]}, traffic_direction="INGRESS", node_name="node-b")
    )
    assert flow.source == Endpoint(type=EndpointType.HOST, name_aggr="node-b", ip="10.244.1.12", port=52814)
    assert flow.reporter is Reporter.DESTINATION


@pytest.mark.parametrize(
    ("changes", "attribute", "expected"),
    [
        ({"verdict": "AUDIT"}, "action", FlowAction.ALLOW),
        ({"verdict": "DROPPED", "drop_reason_desc": "POLICY_DENIED"}, "action", FlowAction.DENY),
        ({"verdict": "DROPPED"}, "action", FlowAction.DENY),
        ({"traffic_direction": "INGRESS"}, "reporter", Reporter.DESTINATION),
        ({"l4": {"UDP": {"source_port": 53811, "destination_port": 53}}}, "proto", "udp"),
        ({"l4": {"SCTP": {"source_port": 1, "destination_port": 2}}}, "proto", "sctp"),
        ({"l4": {"ICMPv4": {"type": 8}}}, "proto", "icmp"),
        ({"l4": {"ICMPv6": {"type": 128}}}, "proto", "icmpv6"),
        ({"l4": {"ICMPv4": {"type": 8}}}, "dest.port", None),
        ({"destination_names": ["api.twilio.com"]}, "dest_domains", ("api.twilio.com",)),
        ({"destination_service": DELETE}, "dest_service_name", None),
        ({"time": DELETE}, "start_time", 1718236803),
        ({"time": "2024-06-13T02:00:03+02:00"}, "start_time", 1718236803),
        ({"IP": DELETE}, "source.ip", None),
        ({"destination_names": "api.twilio.com"}, "dest_domains", ("api.twilio.com",)),
    ],
)
def test_fields_map_onto_calicos_model(changes, attribute, expected):
    value: Any = parse_hubble(hubble(**changes))
    for part in attribute.split("."):
        value = getattr(value, part)
    assert value == expected


def test_a_bare_flow_without_the_observe_wrapper_parses():
    assert parse_hubble(hubble()["flow"]) == parse_hubble(hubble())


def test_the_node_name_of_the_wrapper_stands_in_for_the_flows():
    raw = hubble()
    del raw["flow"]["node_name"]
    assert parse_hubble(raw).host == "node-a"


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"verdict": DELETE}, "flow.verdict", "required field is missing"),
        ({"verdict": "TRACED"}, "flow.verdict", "'TRACED' is not a policy verdict"),
        ({"verdict": "VERDICT_UNKNOWN"}, "flow.verdict", "is not a policy verdict"),
        ({"verdict": 1}, "flow.verdict", "1 is not one of FORWARDED, AUDIT, DROPPED"),
        (
            {"verdict": "DROPPED", "drop_reason_desc": "CT_MAP_INSERTION_FAILED"},
            "flow.drop_reason_desc",
            "not by policy",
        ),
        ({"traffic_direction": "TRAFFIC_DIRECTION_UNKNOWN"}, "flow.traffic_direction", "is not one of EGRESS, INGRESS"),
        ({"traffic_direction": DELETE}, "flow.traffic_direction", "required field is missing"),
        ({"l4": DELETE}, "flow.l4", "required field is missing"),
        ({"l4": {"ICMP": {}}}, "flow.l4", "holds none of TCP, UDP, SCTP, ICMPv4, ICMPv6"),
        ({"l4": {"TCP": 5}}, "flow.l4.TCP", "must be an object"),
        ({"l4": {"TCP": {"source_port": 1}}}, "flow.l4.TCP.destination_port", "required field is missing"),
        ({"l4": {"UDP": {"source_port": 70000, "destination_port": 53}}}, "flow.l4.UDP.source_port", "outside 0-65535"),
        ({"IP": {"source": "10.244.1", "destination": "10.244.1.13"}}, "flow.IP.source", "is not an IP address"),
        ({"IP": "10.244.1.12"}, "flow.IP", "must be an object"),
        ({"source": DELETE}, "flow.source", "required field is missing"),
        ({"destination": []}, "flow.destination", "must be an object"),
        ({"source": {"namespace": "storefront", "labels": []}}, "flow.source.pod_name", "needs its pod name"),
        ({"source": {"pod_name": "x-1", "labels": []}}, "flow.source.namespace", "pod 'x-1' has no namespace"),
        ({"source": {**FRONTEND, "labels": "k8s:app=frontend"}}, "flow.source.labels", "must be a list"),
        ({"source": {**FRONTEND, "workloads": "frontend"}}, "flow.source.workloads", "must be a list"),
        ({"source": {**FRONTEND, "labels": ["k8s:=x"]}}, "flow.source.labels", "has an empty key"),
        (
            {"destination": {"identity": 2, "labels": ["reserved:world"]}, "IP": {"source": "10.244.1.12"}},
            "flow.IP.destination",
            "required field is missing",
        ),
        ({"source": {"identity": 1, "labels": ["reserved:host"]}, "node_name": DELETE}, "flow.node_name", "missing"),
        ({"destination_names": [3]}, "flow.destination_names", "domains must be non-empty strings"),
        ({"destination_service": ["x"]}, "flow.destination_service", "must be an object"),
    ],
)
def test_bad_flows_are_refused_naming_the_field(changes, field, reason):
    with pytest.raises(FlowRecordError) as caught:
        parse_hubble(hubble(**changes))
    assert caught.value.field == field
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("time", "reason"),
    [
        (DELETE, "required field is missing"),
        ("yesterday", "'yesterday' is not an RFC 3339 time"),
        ("2024-06-13T00:00:03", "has no time zone"),
        (1718236803, "must be an RFC 3339 time string, found number"),
        ("1969-12-31T23:59:00Z", "is before 1970"),
    ],
)
def test_bad_times_are_refused(time, reason):
    raw = hubble(time=DELETE)
    if time is DELETE:
        del raw["time"]
    else:
        raw["time"] = time
    with pytest.raises(FlowRecordError) as caught:
        parse_hubble(raw)
    assert caught.value.field == "time"
    assert reason in caught.value.reason


def test_the_flow_must_be_an_object():
    with pytest.raises(FlowRecordError, match=r"^flow: must be an object, found string$"):
        parse_hubble({"flow": "FORWARDED"})
    with pytest.raises(FlowRecordError, match="a flow record must be a JSON object"):
        parse_hubble("flow")  # type: ignore[arg-type]
