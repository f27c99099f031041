"""The collector's Calico fast path accepts exactly what ``parse_calico`` accepts, with the same rows and reasons.

The reference is the full path: :func:`parse_calico` then :class:`RowEncoder` (a row, or the refusal's field and
reason). The fast path may decline a record (the collector then takes the full path) but whenever it accepts one,
its row must be the full path's row; and ``parse_lines``, which combines both, must give every line the full
path's outcome. Records are the sample flow log, other spellings of its first record, and hypothesis mutations of them
(any field replaced by any JSON value, or removed) after the fast path has learned the originals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringfence.flows.formats import FlowRecordError, parse_calico
from services.collector.calico_rows import CalicoRowReader
from services.collector.parse import TimeWindow, parse_checked, parse_lines
from services.collector.rows import EncodedBatch, RowEncoder, RowError
from services.common.db.flow_copy import encode_row

DATA = Path(__file__).resolve().parents[1] / "data" / "flows"
WINDOW = TimeWindow(0, 2**40)

Outcome = tuple[tuple[Any, ...] | None, tuple[str, str] | None]


def sample_records() -> list[dict[str, Any]]:
    lines = [line for line in (DATA / "calico-flows.log").read_bytes().split(b"\n") if line.strip()]
    records = [orjson.loads(line) for line in lines]
    first = records[0]
    # Other spellings the fast path must agree on: older all_policies traces, domains as a list or text, no
    # policies, absent counters, a service port written as its number, labels naming the service account.
    variants: list[dict[str, Any]] = [
        {**first, "policies": {"all_policies": first["policies"]["enforced_policies"]}},
        {**first, "policies": None, "dest_domains": ["api.twilio.com", "twilio.com"]},
        {key: value for key, value in first.items() if key not in {"num_flows", "bytes_in", "http_requests_denied_in"}},
        {**first, "source_labels": {"labels": ["app=x", "projectcalico.org/serviceaccount=x-sa"]}, "source_port": 4242},
        {**first, "dest_type": "net", "dest_name_aggr": "pub", "dest_namespace": "-", "dest_ip": "2001:DB8::1"},
    ]
    return [*records, *variants]


SAMPLES = sample_records()
RARE_SPELLINGS = [
    {**SAMPLES[0], "num_flows": 3.0},
    {**SAMPLES[0], "source_labels": {"labels": ["app=caf\u00e9"]}},
    {**SAMPLES[0], "start_time": float(SAMPLES[0]["start_time"])},
]
"""Valid records the fast path leaves to the full path for good (an integral float, a non-ASCII label)."""


def full_path(encoder: RowEncoder, record: Any, window: TimeWindow = WINDOW) -> Outcome:
    """The reference outcome: the row the full path stores, or the (field, reason) it refuses with."""
    try:
        # The full path: the parser, then the store's limits (NUL characters, the accepted time window).
        flow = parse_checked(record, None, orjson.dumps(record), window.earliest_start, window.latest_end, calico=True)
        batch = encoder.new_batch()
        encoder.add(batch, flow)
    except (FlowRecordError, RowError) as error:
        return None, (error.field, error.reason)
    return batch.rows[0], None


def line(record: Any) -> bytes:
    return orjson.dumps(record)


def learn(reader: CalicoRowReader, encoder: RowEncoder, record: dict[str, Any]) -> None:
    """Teach ``reader`` the record as the parser does: after the full path has appended its row."""
    batch = encoder.new_batch()
    encoder.add(batch, parse_calico(record))
    reader.learn(line(record), batch)


def fast_add(reader: CalicoRowReader, batch: EncodedBatch, record: Any, window: TimeWindow = WINDOW) -> bool:
    return reader.add(batch, line(record), window.earliest_start, window.latest_end, detect=True)


def trained_reader() -> tuple[RowEncoder, CalicoRowReader]:
    encoder = RowEncoder()
    reader = CalicoRowReader()
    for record in SAMPLES:
        learn(reader, encoder, record)
    return encoder, reader


def test_every_sample_takes_the_fast_path_once_learned_and_gets_the_full_paths_row() -> None:
    encoder, reader = trained_reader()
    for record in SAMPLES:
        batch = encoder.new_batch()
        assert fast_add(reader, batch, record)
        row, error = full_path(encoder, record)
        assert error is None
        assert batch.rows == [row]
        assert batch.copy_data == [encode_row(row)]
        flow = parse_calico(record)
        trace = encoder.trace(flow.enforced_policies, flow.pending_policies)
        assert list(batch.trace_sets.values()) == ([] if trace is None else [trace])


def test_rare_spellings_stay_on_the_full_path_and_are_stored_as_it_parses_them() -> None:
    encoder, reader = trained_reader()
    for record in RARE_SPELLINGS:
        learn(reader, encoder, record)
        assert not fast_add(reader, encoder.new_batch(), record)
    lines = [line(record) for record in RARE_SPELLINGS]
    chunk = parse_lines(lines, list(range(len(lines))), source="t", first_line_no=1, fmt=None, window=WINDOW)
    assert chunk.encoded.rows == [full_path(encoder, record)[0] for record in RARE_SPELLINGS]


def test_a_reader_that_has_learned_nothing_declines_everything() -> None:
    encoder = RowEncoder()
    reader = CalicoRowReader()
    batch = encoder.new_batch()
    assert not any(fast_add(reader, batch, record) for record in SAMPLES)
    assert batch.rows == []


ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),  # what JSON lines (orjson) carry
    st.sampled_from([0, 1, 6, 80, 65535, 65536, -1, 2**47, 2**48, 1.0, 80.0, 0.5, -0.0]),
    st.sampled_from(["", "-", "tcp", "TCP", "6", "wep", "net", "pub", "allow", "deny", "src", "dst", "10.0.0.1"]),
    st.text(max_size=8),
    st.lists(st.sampled_from(["app=a", "a", "=b", "", 1, None]), max_size=3),
    st.dictionaries(st.sampled_from(["labels", "x"]), st.lists(st.sampled_from(["app=a", 1]), max_size=2), max_size=2),
)
REMOVED = object()


def mutate(data: st.DataObject, record: dict[str, Any]) -> dict[str, Any]:
    mutated = orjson.loads(orjson.dumps(record))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        key = data.draw(st.sampled_from(sorted(mutated)))
        target = mutated
        if isinstance(mutated[key], dict) and mutated[key] and data.draw(st.booleans()):
            target = mutated[key]
            key = data.draw(st.sampled_from(sorted(target)))
        value = data.draw(st.one_of(st.just(REMOVED), ODD_VALUES))
        if value is REMOVED:
            del target[key]
        else:
            target[key] = value
    return mutated


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_on_mutated_records_the_fast_path_accepts_only_what_the_full_path_accepts_with_its_row(
    data: st.DataObject,
) -> None:
    encoder, reader = trained_reader()
    record = mutate(data, data.draw(st.sampled_from([*SAMPLES, *RARE_SPELLINGS])))
    batch = encoder.new_batch()
    window = data.draw(st.sampled_from([WINDOW, TimeWindow(1_718_236_900, 1_718_237_000)]))
    accepted = fast_add(reader, batch, record, window)
    if accepted:
        row, error = full_path(encoder, record)
        assert error is None
        assert batch.rows == [row]
        assert batch.copy_data == [encode_row(row)]
        assert window.earliest_start <= row[0]
        assert row[1] <= window.latest_end
    else:
        assert batch.rows == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_parse_lines_gives_each_mutated_line_the_full_paths_row_or_reason(data: st.DataObject) -> None:
    records = [mutate(data, data.draw(st.sampled_from(SAMPLES))) for _ in range(3)]
    records.insert(
        1, data.draw(st.sampled_from([*SAMPLES, *RARE_SPELLINGS]))
    )  # a clean one among them, on the fast path
    lines = [orjson.dumps(record) for record in records]
    chunk = parse_lines(lines, list(range(len(lines))), source="t", first_line_no=1, fmt=None, window=WINDOW)
    encoder = RowEncoder()
    expected = [full_path(encoder, record) for record in records]
    assert chunk.encoded.rows == [row for row, error in expected if error is None]
    assert chunk.row_lines == [index for index, (_, error) in enumerate(expected) if error is None]
    assert [(reject.field, reject.reason) for reject in chunk.rejects] == [
        error for _, error in expected if error is not None
    ]


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"bytes_in": -5}, "bytes_in", "count -5 is negative"),
        ({"packets_out": 2**60}, "packets_out", f"count {2**60} is absurd (at least 2**48)"),
        ({"dest_port": True}, "dest_port", "must be an integer, found boolean True"),
        ({"end_time": 1}, "end_time", "is before start time"),
        ({"action": "maybe"}, "action", "'maybe' is not one of allow, deny"),
        ({"proto": 6.5}, "proto", "must be a protocol name or number, found number"),
        ({"dest_service_port_num": 80.5}, "dest_service_port_num", "must be an integer, found number 80.5"),
    ],
)
def test_a_learned_record_with_one_bad_value_is_refused_for_the_full_paths_reason(
    change: dict[str, Any], field: str, reason: str
) -> None:
    record = {**SAMPLES[0], **change}
    lines = [orjson.dumps(SAMPLES[0]), orjson.dumps(record)]  # the first teaches the fast path the second's shape
    chunk = parse_lines(lines, [0, 1], source="t", first_line_no=1, fmt=None, window=WINDOW)
    assert len(chunk.encoded.rows) == 1
    (reject,) = chunk.rejects
    assert reject.field == field
    assert reason in reject.reason
