"""Calico Enterprise flow-log records: what is read from each field and every reason to refuse one."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from ringfence.flows.formats import FlowRecordError, parse_calico
from ringfence.flows.hits import format_hit
from ringfence.flows.record import Endpoint, EndpointType, Flow, FlowAction, PolicyHit, Reporter

SAMPLE = Path(__file__).parent.parent / "data" / "flows" / "calico-flows.log"
DELETE = object()


def sample_records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]


def record(**changes: Any) -> dict[str, Any]:
    """A valid denied level-1 record (IPs and pod names kept) with ``changes`` applied."""
    base: dict[str, Any] = {
        "start_time": 1718236800,
        "end_time": 1718237100,
        "source_ip": "10.244.1.12",
        "source_name": "frontend-864f4fcdfd-2hhv4",
        "source_name_aggr": "frontend-864f4fcdfd-*",
        "source_namespace": "storefront",
        "source_port": None,
        "source_type": "wep",
        "source_labels": {"labels": ["app=frontend", "projectcalico.org/serviceaccount=frontend"]},
        "dest_ip": "10.244.2.22",
        "dest_name": "backend-6cfbdd589f-jk3lm",
        "dest_name_aggr": "backend-6cfbdd589f-*",
        "dest_namespace": "storefront",
        "dest_port": 5432,
        "dest_type": "wep",
        "dest_labels": {"labels": ["app=backend"]},
        "dest_service_namespace": "-",
        "dest_service_name": "-",
        "dest_service_port": "-",
        "dest_service_port_num": None,
        "dest_domains": None,
        "proto": "tcp",
        "action": "deny",
        "reporter": "dst",
        "policies": {
            "all_policies": ["1|default|storefront/knp.default.backend|deny|-1"],
            "enforced_policies": ["1|default|storefront/knp.default.backend|deny|-1"],
            "pending_policies": ["1|default|storefront/staged:knp.default.backend|deny|-1"],
            "transit_policies": [],
        },
        "bytes_in": 0,
        "bytes_out": 240,
        "packets_in": 0,
        "packets_out": 4,
        "num_flows": 1,
        "num_flows_started": 1,
        "num_flows_completed": 0,
        "http_requests_allowed_in": 0,
        "http_requests_denied_in": 0,
        "host": "node-b",
        "process_name": "-",
    }
    for key, value in changes.items():
        if value is DELETE:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def test_a_denied_record_reads_every_field():
    assert parse_calico(record()) == Flow(
        start_time=1718236800,
        end_time=1718237100,
        source=Endpoint(
            type=EndpointType.WORKLOAD,
            name_aggr="frontend-864f4fcdfd-*",
            namespace="storefront",
            name="frontend-864f4fcdfd-2hhv4",
            labels=(("app", "frontend"), ("projectcalico.org/serviceaccount", "frontend")),
            ip="10.244.1.12",
            port=None,
            service_account="frontend",
        ),
        dest=Endpoint(
            type=EndpointType.WORKLOAD,
            name_aggr="backend-6cfbdd589f-*",
            namespace="storefront",
            name="backend-6cfbdd589f-jk3lm",
            labels=(("app", "backend"),),
            ip="10.244.2.22",
            port=5432,
        ),
        proto="tcp",
        reporter=Reporter.DESTINATION,
        action=FlowAction.DENY,
        host="node-b",
        bytes_out=240,
        packets_out=4,
        num_flows=1,
        num_flows_started=1,
        enforced_policies=(PolicyHit(1, "default", "knp", "backend", "deny", -1, "storefront"),),
        pending_policies=(PolicyHit(1, "default", "sknp", "backend", "deny", -1, "storefront"),),
    )


def test_every_sample_line_parses_and_keeps_its_trace_spelling():
    records = sample_records()
    assert len(records) >= 20
    for raw in records:
        flow = parse_calico(raw)
        policies = raw["policies"]
        enforced = policies.get("enforced_policies", policies["all_policies"])
        assert [format_hit(hit) for hit in flow.enforced_policies] == enforced
        assert [format_hit(hit) for hit in flow.pending_policies] == policies.get("pending_policies", [])
        assert flow.source.name_aggr == raw["source_name_aggr"]
        assert flow.dest.name_aggr == raw["dest_name_aggr"]


def test_the_sample_covers_the_storefront_scenario():
    flows = [parse_calico(raw) for raw in sample_records()]
    assert {flow.reporter for flow in flows} == {Reporter.SOURCE, Reporter.DESTINATION}
    assert {flow.action for flow in flows} == {FlowAction.ALLOW, FlowAction.DENY}
    assert {flow.dest.type for flow in flows} == {EndpointType.WORKLOAD, EndpointType.NETWORK, EndpointType.NETWORK_SET}
    assert EndpointType.HOST in {flow.source.type for flow in flows}
    kinds = {hit.kind for flow in flows for hit in flow.enforced_policies + flow.pending_policies}
    assert kinds == {"gnp", "np", "knp", "sknp", "snp", "sgnp", "pro"}
    twilio = [flow for flow in flows if "api.twilio.com" in flow.dest_domains]
    assert twilio
    assert {flow.source.name_aggr for flow in twilio} == {"microservice2-5f7b9c8d46-*"}
    assert any(hit.rule_index is None for flow in flows for hit in flow.enforced_policies)


@pytest.mark.parametrize(
    ("changes", "attribute", "expected"),
    [
        ({"source_namespace": "-", "source_type": "hep"}, "source.namespace", None),
        ({"source_name": "-"}, "source.name", None),
        ({"source_ip": None}, "source.ip", None),
        ({"source_ip": "fd00:0:0::1"}, "source.ip", "fd00::1"),
        ({"source_port": 40112}, "source.port", 40112),
        ({"dest_port": None}, "dest.port", None),
        ({"source_labels": None}, "source.labels", ()),
        ({"source_labels": DELETE}, "source.labels", ()),
        ({"source_labels": {"labels": None}}, "source.labels", ()),
        ({"source_labels": ["b=2", "a=1=x", "c"]}, "source.labels", (("a", "1=x"), ("b", "2"), ("c", ""))),
        ({"source_labels": {"app": "frontend"}}, "source.labels", (("app", "frontend"),)),
        ({"source_labels": {"labels": ["app=frontend"]}}, "source.service_account", None),
        ({"dest_domains": ["api.twilio.com"]}, "dest_domains", ("api.twilio.com",)),
        ({"dest_domains": "api.twilio.com,www.twilio.com"}, "dest_domains", ("api.twilio.com", "www.twilio.com")),
        ({"dest_domains": "-"}, "dest_domains", ()),
        ({"dest_domains": []}, "dest_domains", ()),
        (
            {"dest_service_namespace": "storefront", "dest_service_name": "backend", "dest_service_port": "postgres"},
            "dest_service_port",
            "postgres",
        ),
        ({"dest_service_name": "-"}, "dest_service_name", None),
        ({"dest_service_port_num": 5432}, "dest_service_port_num", 5432),
        ({"dest_service_port": 5432}, "dest_service_port_num", 5432),
        ({"dest_service_port": 5432}, "dest_service_port", None),
        ({"proto": "TCP"}, "proto", "tcp"),
        ({"proto": 17}, "proto", "udp"),
        ({"proto": "1"}, "proto", "icmp"),
        ({"proto": 47}, "proto", "47"),
        ({"host": "-"}, "host", None),
        ({"host": DELETE}, "host", None),
        ({"start_time": 1718236800.0}, "start_time", 1718236800),
        ({"end_time": 1718236800}, "end_time", 1718236800),
        ({"reporter": "fwd"}, "reporter", Reporter.FORWARD),
        ({"num_flows": DELETE}, "num_flows", 1),
        ({"bytes_in": DELETE, "bytes_out": None}, "bytes_out", 0),
        ({"http_requests_allowed_in": 3}, "http_requests_allowed_in", 3),
        ({"policies": None}, "enforced_policies", ()),
        (
            {"policies": {"all_policies": ["0|t|t.p|allow|0"]}},
            "enforced_policies",
            (PolicyHit(0, "t", "gnp", "t.p", "allow", 0),),
        ),
        ({"policies": {"all_policies": ["0|t|t.p|allow|0"]}}, "pending_policies", ()),
        ({"policies": {"enforced_policies": None, "pending_policies": ["0|t|t.p|allow|0"]}}, "enforced_policies", ()),
        ({"policies": {"all_policies": ["0|t|t.x|deny|0"], "enforced_policies": []}}, "enforced_policies", ()),
    ],
)
def test_fields_are_read_as_calico_writes_them(changes, attribute, expected):
    value: Any = parse_calico(record(**changes))
    for part in attribute.split("."):
        value = getattr(value, part)
    assert value == expected


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"start_time": DELETE}, "start_time", "required field is missing"),
        ({"start_time": None}, "start_time", "required field is missing"),
        ({"start_time": "1718236800"}, "start_time", "must be an integer, found string"),
        ({"start_time": True}, "start_time", "must be an integer, found boolean"),
        ({"start_time": 1.5}, "start_time", "must be an integer, found number"),
        ({"start_time": -5}, "start_time", "time -5 is negative"),
        ({"end_time": 1718236799}, "end_time", "end time 1718236799 is before start time 1718236800"),
        ({"source_type": DELETE}, "source_type", "required field is missing"),
        ({"source_type": "pod"}, "source_type", "'pod' is not one of wep, hep, ns, net"),
        ({"dest_type": 1}, "dest_type", "1 is not one of"),
        ({"dest_name_aggr": DELETE}, "dest_name_aggr", "required field is missing"),
        ({"dest_name_aggr": ""}, "dest_name_aggr", "must not be empty"),
        ({"dest_name_aggr": 7}, "dest_name_aggr", "must be a string, found number"),
        ({"source_namespace": "-"}, "source_namespace", "a workload endpoint (wep) needs a namespace"),
        ({"dest_type": "net", "dest_name_aggr": "internet"}, "dest_name_aggr", "'pub' or 'pvt', not 'internet'"),
        ({"source_namespace": ["storefront"]}, "source_namespace", "must be a string, found array"),
        ({"source_ip": "10.244.1.300"}, "source_ip", "'10.244.1.300' is not an IP address"),
        ({"dest_ip": 167772161}, "dest_ip", "must be an IP address string, found number"),
        ({"dest_port": 70000}, "dest_port", "port 70000 is outside 0-65535"),
        ({"dest_port": -1}, "dest_port", "port -1 is outside 0-65535"),
        ({"dest_port": "5432"}, "dest_port", "must be an integer, found string"),
        ({"source_port": True}, "source_port", "must be an integer, found boolean"),
        ({"dest_service_port_num": 65536}, "dest_service_port_num", "outside 0-65535"),
        ({"bytes_in": -1}, "bytes_in", "count -1 is negative"),
        ({"num_flows": "3"}, "num_flows", "must be an integer, found string"),
        ({"packets_out": 2.5}, "packets_out", "must be an integer"),
        ({"action": DELETE}, "action", "required field is missing"),
        ({"action": "Allow"}, "action", "'Allow' is not one of allow, deny"),
        ({"action": "pass"}, "action", "'pass' is not one of allow, deny"),
        ({"reporter": "source"}, "reporter", "'source' is not one of src, dst, fwd"),
        ({"proto": DELETE}, "proto", "required field is missing"),
        ({"proto": ""}, "proto", "is not a protocol name or number 0-255"),
        ({"proto": 300}, "proto", "protocol number 300 is outside 0-255"),
        ({"proto": "t c p"}, "proto", "is not a protocol name"),
        ({"source_labels": "app=frontend"}, "source_labels", "must be a list of 'key=value' strings or an object"),
        ({"source_labels": {"labels": ["app=frontend", 3]}}, "source_labels.labels", "found number"),
        ({"dest_labels": {"labels": ["=backend"]}}, "dest_labels.labels", "label '=backend' has an empty key"),
        ({"dest_labels": {"app": 3}}, "dest_labels", "a label map must map strings to strings"),
        ({"dest_domains": {"api.twilio.com": 1}}, "dest_domains", "must be a list of domain names"),
        ({"dest_domains": ["api.twilio.com", ""]}, "dest_domains", "domains must be non-empty strings"),
        ({"dest_service_name": 5}, "dest_service_name", "must be a string"),
        ({"host": False}, "host", "must be a string, found boolean"),
        ({"policies": ["0|t|t.p|allow|0"]}, "policies", "must be an object, found array"),
        ({"policies": {"enforced_policies": "0|t|t.p|allow|0"}}, "policies.enforced_policies", "must be a list"),
        (
            {"policies": {"enforced_policies": ["0|t|t.p|allow|0", "1|t|p|allow|0"]}},
            "policies.enforced_policies[1]",
            "policy name 'p' must start with its tier",
        ),
        ({"policies": {"pending_policies": [None]}}, "policies.pending_policies[0]", "must be a policy-hit string"),
        ({"policies": {"all_policies": ["0|t|t.p|maybe|0"]}}, "policies.all_policies[0]", "action 'maybe'"),
    ],
)
def test_bad_records_are_refused_naming_the_field(changes, field, reason):
    with pytest.raises(FlowRecordError) as caught:
        parse_calico(record(**changes))
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert str(caught.value) == f"{field}: {caught.value.reason}"


@pytest.mark.parametrize("value", [None, [], "flow", 3])
def test_a_record_must_be_an_object(value):
    with pytest.raises(FlowRecordError, match="a flow record must be a JSON object") as caught:
        parse_calico(value)
    assert caught.value.field == ""


def test_cached_endpoints_never_hide_a_bad_value():
    # port 1 is cached first; True == 1 in Python, yet a boolean port must still be refused
    assert parse_calico(record(source_port=1)).source.port == 1
    with pytest.raises(FlowRecordError, match="source_port: must be an integer, found boolean"):
        parse_calico(record(source_port=True))
    # an unhashable value in a field that keys the cache is refused, not crashed on
    with pytest.raises(FlowRecordError, match="source_name: must be a string, found array"):
        parse_calico(record(source_name=["frontend"]))


def test_endpoints_that_differ_in_any_field_stay_apart():
    first = parse_calico(record())
    other_port = parse_calico(record(dest_port=5433))
    other_labels = parse_calico(record(dest_labels={"labels": ["app=backend", "tier=data"]}))
    assert first.dest.port == 5432
    assert other_port.dest.port == 5433
    assert other_labels.dest.labels == (("app", "backend"), ("tier", "data"))
    assert parse_calico(record()).dest == first.dest


def test_flow_record_error_survives_pickling():
    with pytest.raises(FlowRecordError) as caught:
        parse_calico(record(dest_port=-1))
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.field, copy.reason, str(copy)) == (caught.value.field, caught.value.reason, str(caught.value))
