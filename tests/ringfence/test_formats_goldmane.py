"""Goldmane flows: Go JSON and protobuf JSON spellings, structured hits, and every reason to refuse one."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from ringfence.flows.formats import FlowRecordError, parse_goldmane
from ringfence.flows.hits import format_hit
from ringfence.flows.record import Endpoint, EndpointType, Flow, FlowAction, PolicyHit, Reporter

SAMPLE = Path(__file__).parent.parent / "data" / "flows" / "goldmane.jsonl"
DELETE = object()


def go_record(**changes: Any) -> dict[str, Any]:
    """A Flow as Go's encoding/json writes the generated struct, with ``changes`` applied to ``Key``."""
    key: dict[str, Any] = {
        "source_name": "microservice1-7c9d8f6b5d-*",
        "source_namespace": "storefront",
        "source_type": 1,
        "dest_name": "backend-6cfbdd589f-*",
        "dest_namespace": "storefront",
        "dest_type": 1,
        "dest_port": 5432,
        "dest_service_name": "backend",
        "dest_service_namespace": "storefront",
        "dest_service_port_name": "postgres",
        "dest_service_port": 5432,
        "proto": "tcp",
        "reporter": 2,
        "action": 1,
        "policies": {
            "enforced_policies": [
                "0|security|gnp:known-bad-actors|pass|-1",
                "1|default|knp:storefront/backend|allow|0",
            ],
            "pending_policies": [
                "0|security|gnp:known-bad-actors|pass|-1",
                "1|default|sknp:storefront/backend|allow|0",
            ],
        },
    }
    for name, value in changes.items():
        if value is DELETE:
            key.pop(name, None)
        else:
            key[name] = value
    return {
        "Key": key,
        "start_time": 1718236815,
        "end_time": 1718236830,
        "source_labels": ["app=microservice1"],
        "dest_labels": ["app=backend"],
        "packets_in": 120,
        "packets_out": 110,
        "bytes_in": 90112,
        "bytes_out": 12288,
        "num_connections_started": 2,
        "num_connections_completed": 1,
        "num_connections_live": 4,
    }


def proto_json_record() -> dict[str, Any]:
    """The same flow as protobuf JSON writes it: camelCase, enums by name, int64 as text, structured hits."""
    return {
        "id": "7",
        "flow": {
            "key": {
                "sourceName": "microservice1-7c9d8f6b5d-*",
                "sourceNamespace": "storefront",
                "sourceType": "WorkloadEndpoint",
                "destName": "backend-6cfbdd589f-*",
                "destNamespace": "storefront",
                "destType": "WorkloadEndpoint",
                "destPort": "5432",
                "destServiceName": "backend",
                "destServiceNamespace": "storefront",
                "destServicePortName": "postgres",
                "destServicePort": "5432",
                "proto": "tcp",
                "reporter": "Dst",
                "action": "Allow",
                "policies": {
                    "enforcedPolicies": [
                        {
                            "kind": "EndOfTier",
                            "tier": "security",
                            "action": "Pass",
                            "ruleIndex": "-1",
                            "trigger": {"kind": "GlobalNetworkPolicy", "name": "known-bad-actors", "tier": "security"},
                        },
                        {
                            "kind": "NetworkPolicy",
                            "namespace": "storefront",
                            "name": "backend",
                            "tier": "default",
                            "action": "Allow",
                            "policyIndex": "1",
                        },
                    ],
                    "pendingPolicies": [
                        "0|security|gnp:known-bad-actors|pass|-1",
                        {
                            "kind": 5,
                            "namespace": "storefront",
                            "name": "backend",
                            "tier": "default",
                            "action": 1,
                            "policyIndex": 1,
                        },
                    ],
                },
            },
            "startTime": "1718236815",
            "endTime": "1718236830",
            "sourceLabels": ["app=microservice1"],
            "destLabels": ["app=backend"],
            "packetsIn": "120",
            "packetsOut": "110",
            "bytesIn": "90112",
            "bytesOut": "12288",
            "numConnectionsStarted": "2",
            "numConnectionsCompleted": "1",
            "numConnectionsLive": "4",
        },
    }


EXPECTED = Flow(
    start_time=1718236815,
    end_time=1718236830,
    source=Endpoint(
        type=EndpointType.WORKLOAD,
        name_aggr="microservice1-7c9d8f6b5d-*",
        namespace="storefront",
        labels=(("app", "microservice1"),),
    ),
    dest=Endpoint(
        type=EndpointType.WORKLOAD,
        name_aggr="backend-6cfbdd589f-*",
        namespace="storefront",
        labels=(("app", "backend"),),
        port=5432,
    ),
    proto="tcp",
    reporter=Reporter.DESTINATION,
    action=FlowAction.ALLOW,
    dest_service_namespace="storefront",
    dest_service_name="backend",
    dest_service_port="postgres",
    dest_service_port_num=5432,
    bytes_in=90112,
    bytes_out=12288,
    packets_in=120,
    packets_out=110,
    num_flows=5,
    num_flows_started=2,
    num_flows_completed=1,
    enforced_policies=(
        PolicyHit(0, "security", "gnp", "known-bad-actors", "pass", -1),
        PolicyHit(1, "default", "knp", "backend", "allow", 0, "storefront"),
    ),
    pending_policies=(
        PolicyHit(0, "security", "gnp", "known-bad-actors", "pass", -1),
        PolicyHit(1, "default", "sknp", "backend", "allow", 0, "storefront"),
    ),
)


def test_go_json_flow_reads_every_field():
    assert parse_goldmane(go_record()) == EXPECTED


def test_protobuf_json_flow_with_structured_hits_reads_the_same():
    assert parse_goldmane(proto_json_record()) == EXPECTED


def test_every_sample_line_parses():
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 10
    flows = [parse_goldmane(json.loads(line)) for line in lines]
    assert {flow.reporter for flow in flows} == {Reporter.SOURCE, Reporter.DESTINATION}
    assert {flow.action for flow in flows} == {FlowAction.ALLOW, FlowAction.DENY}
    assert {flow.dest.type for flow in flows} == {EndpointType.WORKLOAD, EndpointType.NETWORK, EndpointType.NETWORK_SET}
    kinds = {hit.kind for flow in flows for hit in flow.enforced_policies + flow.pending_policies}
    assert kinds == {"gnp", "np", "knp", "sknp", "snp", "sgnp", "pro"}


def test_string_hits_are_kept_exactly():
    flow = parse_goldmane(go_record())
    assert [format_hit(hit, "goldmane") for hit in flow.enforced_policies] == [
        "0|security|gnp:known-bad-actors|pass|-1",
        "1|default|knp:storefront/backend|allow|0",
    ]


def test_a_structured_profile_hit_gets_the_profile_tier():
    raw = proto_json_record()
    raw["flow"]["key"]["policies"]["enforcedPolicies"] = [
        {"kind": "Profile", "name": "kns.storefront", "action": "Allow"}
    ]
    (hit,) = parse_goldmane(raw).enforced_policies
    assert format_hit(hit, "goldmane") == "0|__PROFILE__|pro:kns.storefront|allow|0"


@pytest.mark.parametrize(
    ("changes", "attribute", "expected"),
    [
        ({"dest_port": DELETE}, "dest.port", None),
        ({"dest_port": 0}, "dest.port", None),
        ({"dest_port": "443"}, "dest.port", 443),
        ({"dest_namespace": DELETE, "dest_type": 4, "dest_name": "pub"}, "dest.namespace", None),
        ({"dest_type": "Network", "dest_name": "pvt", "dest_namespace": ""}, "dest.type", EndpointType.NETWORK),
        ({"dest_type": 3, "dest_name": "twilio-api", "dest_namespace": DELETE}, "dest.name_aggr", "twilio-api"),
        (
            {"source_type": "HostEndpoint", "source_name": "node-a", "source_namespace": DELETE},
            "source.type",
            EndpointType.HOST,
        ),
        ({"source_type": "wep"}, "source.type", EndpointType.WORKLOAD),
        ({"dest_service_name": DELETE, "dest_service_port": DELETE}, "dest_service_name", None),
        ({"dest_service_port": DELETE}, "dest_service_port_num", None),
        ({"proto": "UDP"}, "proto", "udp"),
        ({"reporter": "Src"}, "reporter", Reporter.SOURCE),
        ({"action": "Deny"}, "action", FlowAction.DENY),
        ({"policies": DELETE}, "enforced_policies", ()),
        ({"policies": {"pendingPolicies": []}}, "enforced_policies", ()),
    ],
)
def test_key_fields_are_read_in_either_spelling(changes, attribute, expected):
    value: Any = parse_goldmane(go_record(**changes))
    for part in attribute.split("."):
        value = getattr(value, part)
    assert value == expected


@pytest.mark.parametrize(
    ("started", "completed", "live", "num_flows"),
    [(None, None, None, 1), (3, 0, 0, 3), (0, 2, 5, 7), (4, 1, 1, 4)],
)
def test_num_flows_is_a_lower_bound_of_the_connections(started, completed, live, num_flows):
    raw = go_record()
    for name, value in (
        ("num_connections_started", started),
        ("num_connections_completed", completed),
        ("num_connections_live", live),
    ):
        if value is None:
            del raw[name]
        else:
            raw[name] = value
    assert parse_goldmane(raw).num_flows == num_flows


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"source_type": DELETE}, "Key.source_type", "required field is missing"),
        ({"source_type": 0}, "Key.source_type", "required field is missing"),
        ({"source_type": "EndpointTypeUnspecified"}, "Key.source_type", "required field is missing"),
        ({"source_type": "Pod"}, "Key.source_type", "'Pod' is not one of WorkloadEndpoint, HostEndpoint"),
        ({"source_type": True}, "Key.source_type", "True is not one of"),
        ({"dest_type": 9}, "Key.dest_type", "9 is not one of"),
        ({"source_name": DELETE}, "Key.source_name", "required field is missing"),
        ({"source_namespace": DELETE}, "Key.source_namespace", "a workload endpoint needs a namespace"),
        ({"dest_type": 4, "dest_name": "internet", "dest_namespace": DELETE}, "Key.dest_name", "'pub' or 'pvt'"),
        ({"dest_port": 70000}, "Key.dest_port", "port 70000 is outside 0-65535"),
        ({"dest_port": "80x"}, "Key.dest_port", "must be an integer, found string '80x'"),
        ({"dest_service_port": -3}, "Key.dest_service_port", "outside 0-65535"),
        ({"proto": DELETE}, "Key.proto", "required field is missing"),
        ({"reporter": DELETE}, "Key.reporter", "required field is missing"),
        ({"reporter": "ReporterUnspecified"}, "Key.reporter", "required field is missing"),
        ({"reporter": 3}, "Key.reporter", "3 is not one of Src, Dst"),
        ({"action": "Pass"}, "Key.action", "'Pass' is not one of Allow, Deny"),
        ({"action": 0}, "Key.action", "required field is missing"),
        ({"policies": []}, "Key.policies", "must be an object, found array"),
        ({"policies": {"enforced_policies": "x"}}, "Key.policies.enforced_policies", "must be a list of policy hits"),
        (
            {"policies": {"enforced_policies": ["0|t|gnp:n|allow|0", "0|t|gnp:N|allow|0"]}},
            "Key.policies.enforced_policies[1]",
            "policy name 'N'",
        ),
        (
            {"policies": {"pending_policies": [7]}},
            "Key.policies.pending_policies[0]",
            "a policy hit is a string or an object",
        ),
        (
            {
                "policies": {
                    "pending_policies": [{"kind": "AdminNetworkPolicy", "name": "x", "tier": "t", "action": "Allow"}]
                }
            },
            "Key.policies.pending_policies[0].kind",
            "'AdminNetworkPolicy' is not one of",
        ),
        (
            {"policies": {"pending_policies": [{"kind": "GlobalNetworkPolicy", "name": "x", "tier": "t"}]}},
            "Key.policies.pending_policies[0].action",
            "required field is missing",
        ),
        (
            {"policies": {"pending_policies": [{"kind": "GlobalNetworkPolicy", "tier": "t", "action": "Allow"}]}},
            "Key.policies.pending_policies[0].name",
            "required field is missing",
        ),
        (
            {
                "policies": {
                    "pending_policies": [{"kind": "EndOfTier", "tier": "t", "action": "Deny", "rule_index": -1}]
                }
            },
            "Key.policies.pending_policies[0].trigger",
            "an EndOfTier hit needs its trigger policy",
        ),
        (
            {
                "policies": {
                    "pending_policies": [{"kind": "NetworkPolicy", "name": "x", "tier": "default", "action": "Allow"}]
                }
            },
            "Key.policies.pending_policies[0]",
            "kind 'knp' needs a namespace",
        ),
        (
            {"policies": {"pending_policies": [{"kind": 2, "name": "x", "tier": 5, "action": "Allow"}]}},
            "Key.policies.pending_policies[0].tier",
            "must be a string, found number",
        ),
        (
            {
                "policies": {
                    "pending_policies": [{"kind": 2, "name": "x", "tier": "t", "action": "Allow", "rule_index": "a"}]
                }
            },
            "Key.policies.pending_policies[0].rule_index",
            "must be an integer",
        ),
    ],
)
def test_bad_keys_are_refused_naming_the_field(changes, field, reason):
    with pytest.raises(FlowRecordError) as caught:
        parse_goldmane(go_record(**changes))
    assert caught.value.field == field
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("name", "value", "field", "reason"),
    [
        ("Key", DELETE, "Key", "required field is missing"),
        ("Key", None, "Key", "required field is missing"),
        ("Key", ["x"], "Key", "must be an object, found array"),
        ("start_time", DELETE, "start_time", "required field is missing"),
        ("start_time", "soon", "start_time", "must be an integer, found string 'soon'"),
        ("start_time", -1, "start_time", "time -1 is negative"),
        ("end_time", 1718236800, "end_time", "end time 1718236800 is before start time 1718236815"),
        ("packets_in", -4, "packets_in", "count -4 is negative"),
        ("bytes_out", 1.5, "bytes_out", "must be an integer"),
        ("num_connections_live", "-2", "num_connections_live", "count -2 is negative"),
        ("source_labels", "app=x", "source_labels", "must be a list of 'key=value' strings"),
        ("dest_labels", ["=x"], "dest_labels", "label '=x' has an empty key"),
    ],
)
def test_bad_flow_fields_are_refused_naming_the_field(name, value, field, reason):
    raw = go_record()
    if value is DELETE:
        del raw[name]
    else:
        raw[name] = value
    with pytest.raises(FlowRecordError) as caught:
        parse_goldmane(raw)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_errors_inside_a_wrapper_name_the_wrapped_path():
    raw = proto_json_record()
    raw["flow"]["key"]["destPort"] = "99999"
    with pytest.raises(FlowRecordError) as caught:
        parse_goldmane(raw)
    assert caught.value.field == "flow.key.dest_port"
    broken = copy.deepcopy(proto_json_record())
    del broken["flow"]["startTime"]
    with pytest.raises(FlowRecordError, match=r"^flow\.start_time: required field is missing$"):
        parse_goldmane(broken)


def test_a_record_must_be_an_object():
    with pytest.raises(FlowRecordError, match="a flow record must be a JSON object, found array"):
        parse_goldmane([])  # type: ignore[arg-type]
