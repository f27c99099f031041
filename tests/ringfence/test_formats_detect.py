"""Format detection and the one entry point that parses a record of any format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ringfence.flows.formats import (
    PARSERS,
    FlowRecordError,
    detect_format,
    parse_calico,
    parse_goldmane,
    parse_hubble,
    parse_record,
)

DATA = Path(__file__).parent.parent / "data" / "flows"
SAMPLES = [("calico-flows.log", "calico"), ("goldmane.jsonl", "goldmane"), ("hubble.jsonl", "hubble")]


def lines(name: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize(("name", "fmt"), SAMPLES)
def test_every_sample_line_is_detected_as_its_format(name, fmt):
    assert {detect_format(record) for record in lines(name)} == {fmt}


@pytest.mark.parametrize(("name", "fmt"), SAMPLES)
def test_parse_record_detects_or_takes_the_format(name, fmt):
    parser = {"calico": parse_calico, "goldmane": parse_goldmane, "hubble": parse_hubble}[fmt]
    for record in lines(name):
        expected = parser(record)
        assert parse_record(record) == expected
        assert parse_record(record, fmt) == expected


@pytest.mark.parametrize(
    ("record", "fmt"),
    [
        ({"Key": {}, "start_time": 1}, "goldmane"),
        ({"key": {}}, "goldmane"),
        ({"id": "3", "flow": {"key": {"sourceName": "x"}}}, "goldmane"),
        ({"flow": {"verdict": "FORWARDED"}}, "hubble"),
        ({"verdict": "DROPPED", "IP": {}}, "hubble"),
        ({"flow": {"l4": {}}, "node_name": "n"}, "hubble"),
        ({"source_name_aggr": "x", "dest_name_aggr": "y"}, "calico"),
        ({"reporter": "src"}, "calico"),
    ],
)
def test_detection_uses_the_fields_only_one_format_has(record, fmt):
    assert detect_format(record) == fmt


@pytest.mark.parametrize("record", [{}, {"start_time": 1, "end_time": 2}, {"flow": "x"}, {"Key": "not an object"}])
def test_records_of_no_known_format_are_refused(record):
    with pytest.raises(FlowRecordError, match="unknown flow record format"):
        detect_format(record)


def test_detection_refuses_non_objects():
    with pytest.raises(FlowRecordError, match="must be a JSON object, found array"):
        detect_format([1, 2])  # type: ignore[arg-type]


def test_a_wrong_format_name_is_a_caller_error_not_a_bad_record():
    with pytest.raises(ValueError, match="unknown flow format 'csv'") as caught:
        parse_record({"reporter": "src"}, "csv")
    assert not isinstance(caught.value, FlowRecordError)


def test_a_record_parsed_as_the_wrong_format_is_refused():
    goldmane = lines("goldmane.jsonl")[0]
    with pytest.raises(FlowRecordError, match=r"^source_type: required field is missing$"):
        parse_record(goldmane, "calico")
    with pytest.raises(FlowRecordError, match=r"^time: required field is missing$"):
        parse_record(lines("calico-flows.log")[0] | {"flow": {}}, "hubble")


def test_the_parser_table_names_the_three_formats():
    assert sorted(PARSERS) == ["calico", "goldmane", "hubble"]
