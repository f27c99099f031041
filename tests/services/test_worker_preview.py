"""The preview's window slicing and parameters (no servers needed)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.model import ResourceKey
from services.worker.preview import PreviewInputError, Slice, parse_deletes, parse_window, plan_slices

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("buckets", "window", "expected"),
    [
        ({}, (None, None), [Slice(None, None, 0)]),
        ({}, (at(0), at(60)), [Slice(at(0), at(60), 0)]),
        (
            {at(15): 5_000, at(10): 8_000, at(5): 500_000, at(0): 1_000},
            (None, None),
            [Slice(at(10), None, 13_000), Slice(at(5), at(10), 500_000), Slice(None, at(5), 1_000)],
        ),
        (
            {at(15): 20_000, at(10): 1},
            (at(12), at(20)),
            [Slice(at(15), at(20), 20_000), Slice(at(12), at(15), 1)],
        ),
        ({at(0): 50_000}, (at(0), None), [Slice(at(0), None, 50_000)]),
    ],
)
def test_the_window_is_cut_newest_first(buckets, window, expected):
    assert plan_slices(buckets, *window, first=10_000, rest=400_000) == expected


@settings(max_examples=200)
@given(
    st.dictionaries(st.integers(0, 500).map(lambda n: at(5 * n)), st.integers(0, 50_000), max_size=40),
    st.none() | st.integers(0, 2500).map(at),
    st.integers(1, 100_000),
)
def test_slices_cover_the_window_without_gaps_or_overlaps(buckets, start, first):
    slices = plan_slices(buckets, start, None, first=first, rest=4 * first)
    assert slices[0].end is None
    assert slices[-1].start == start
    for newer, older in itertools.pairwise(slices):
        assert older.end == newer.start
        assert older.start is None or older.start < older.end


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, (None, None)),
        ({"from": None, "to": ""}, (None, None)),
        ({"from": "2024-05-01T00:00:00+00:00", "to": "2024-05-01T01:00:00Z"}, (at(0), at(60))),
        ({"from": "2024-05-01T02:00:00+02:00"}, (at(0), None)),
        ({"from": "2024-05-01T00:05:00"}, (at(5), None)),
    ],
)
def test_windows_are_read_as_utc_times(params, expected):
    assert parse_window(params) == expected


@pytest.mark.parametrize("params", [{"from": "yesterday"}, {"to": 1714521600}])
def test_malformed_windows_are_refused(params):
    with pytest.raises(PreviewInputError):
        parse_window(params)


def test_deletes_name_resources():
    params = {
        "deletes": [
            {"kind": "GlobalNetworkPolicy", "namespace": None, "name": "security.known-bad-actors"},
            {"kind": "NetworkPolicy", "namespace": "storefront", "name": "default.backend"},
        ]
    }
    assert parse_deletes(params) == [
        ResourceKey("GlobalNetworkPolicy", None, "security.known-bad-actors"),
        ResourceKey("NetworkPolicy", "storefront", "default.backend"),
    ]
    with pytest.raises(PreviewInputError, match="kind and a name"):
        parse_deletes({"deletes": [{"kind": "NetworkPolicy"}]})
