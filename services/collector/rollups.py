"""Staging rows -> the batch's rows grouped by everything the rollups and the inventory read.

A batch of thousands of records collapses to fewer groups (records of one window that differ only by
node, counters or names the rollups do not keep). The collector sums them here, in one pass with
C-level key building, then derives the batch's partial sums for the 5-minute rollups from the groups
(:func:`rollup_deltas`: flow edges per bucket, policy hits per bucket through each trace's hits),
which the store appends with COPY (:func:`services.common.db.flow_copy.add_rollups`), and the endpoints
the inventory upserts (:func:`sightings`). PostgreSQL's share of a batch is then two COPYs more than
the rows themselves, no upsert per rollup row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final

from services.common.db.flow_copy import RollupTuples
from services.common.db.flows import (
    GROUP_COLUMNS,
    ROLLUP_BUCKET_SECONDS,
    STAGE_COLUMNS,
    StageRow,
    TraceSet,
)

_C: Final = {name: index for index, name in enumerate(STAGE_COLUMNS)}
_KEY_COLUMNS: Final = GROUP_COLUMNS[: GROUP_COLUMNS.index("end_s")]
_GROUP_KEY: Final = itemgetter(*(_C[name] for name in _KEY_COLUMNS))
_VALUES: Final = itemgetter(
    _C["end_s"], _C["num_flows"], _C["packets_in"], _C["packets_out"], _C["bytes_in"], _C["bytes_out"]
)


def group_rows(rows: Sequence[StageRow]) -> list[list[Any]]:
    """``rows`` grouped and summed: one list per group, in :data:`~services.common.db.flows.GROUP_COLUMNS` order."""
    groups: dict[tuple[Any, ...], list[tuple[int, ...]]] = {}
    group_key, values_of = _GROUP_KEY, _VALUES
    get = groups.get
    for row in rows:
        key = group_key(row)
        members = get(key)
        if members is None:
            groups[key] = [values_of(row)]
        else:
            members.append(values_of(row))
    grouped = []
    for key, members in groups.items():
        if len(members) == 1:
            grouped.append([*key, *members[0], 1])
        else:
            columns = list(zip(*members, strict=True))
            grouped.append([*key, max(columns[0]), *map(sum, columns[1:]), len(members)])
    return grouped


def sightings(groups: Sequence[Sequence[Any]]) -> list[tuple[str, str, str, int, int, int | None]]:
    """The endpoints with a namespace that ``groups`` show: (namespace, name_aggr, type, first start, last end,
    label set of the last flow whose endpoint had labels), what the inventory upserts read."""
    seen: dict[tuple[str, str, str], list[Any]] = {}
    for group in groups:
        start, end = group[0], group[14]
        for namespace, name_aggr, endpoint_type, label_set in (
            (group[1], group[2], group[3], group[12]),
            (group[4], group[5], group[6], group[13]),
        ):
            if namespace is None:
                continue
            key = (namespace, name_aggr, endpoint_type)
            known = seen.get(key)
            if known is None:
                seen[key] = [start, end, label_set, -1 if label_set is None else end]
                continue
            known[0] = min(known[0], start)
            known[1] = max(known[1], end)
            if label_set is not None and end > known[3]:
                known[2] = label_set
                known[3] = end
    return [(*key, first, last, label_set) for key, (first, last, label_set, _) in seen.items()]


_EDGE_KEY: Final = itemgetter(*range(1, GROUP_COLUMNS.index("trace_set")))
"""The edge of a group: its columns from src_namespace to reporter, in the rollup's column order."""


@dataclass(frozen=True, slots=True)
class RollupDeltas:
    """A batch's partial sums: COPY tuples for ``flow_edges_5m`` and ``policy_hits_5m``, and the UTC hours
    they touch."""

    edges: list[bytes]
    hits: list[bytes]
    hours: set[int]


_TUPLES: Final = RollupTuples()
"""This process's encoder of rollup rows (its caches of encoded keys live across batches)."""


def rollup_deltas(groups: Sequence[Sequence[Any]], traces: Mapping[int, TraceSet]) -> RollupDeltas:
    """The 5-minute rollup rows of ``groups`` (:func:`group_rows`); ``traces`` holds every trace they name.

    Edges are summed per bucket and edge; policy hits per bucket and trace first (a batch holds few
    traces), then spread over each trace's hits, each hit counting the trace's records once.
    """
    edges: dict[tuple[Any, ...], list[int]] = {}
    per_trace: dict[tuple[int, int], list[int]] = {}
    edge_key, width = _EDGE_KEY, ROLLUP_BUCKET_SECONDS
    for group in groups:
        start = group[0]
        bucket = start - start % width
        records, num_flows, packets_in, packets_out, bytes_in, bytes_out = (
            group[20],
            group[15],
            group[16],
            group[17],
            group[18],
            group[19],
        )
        key = (bucket, *edge_key(group))
        sums = edges.get(key)
        if sums is None:
            edges[key] = [records, num_flows, packets_in, packets_out, bytes_in, bytes_out]
        else:
            sums[0] += records
            sums[1] += num_flows
            sums[2] += packets_in
            sums[3] += packets_out
            sums[4] += bytes_in
            sums[5] += bytes_out
        trace = group[11]
        if trace is not None:
            traced = per_trace.get((bucket, trace))
            if traced is None:
                per_trace[bucket, trace] = [records, num_flows, packets_in + packets_out, bytes_in + bytes_out]
            else:
                traced[0] += records
                traced[1] += num_flows
                traced[2] += packets_in + packets_out
                traced[3] += bytes_in + bytes_out
    hits: dict[tuple[Any, ...], list[int]] = {}
    for (bucket, trace), sums in per_trace.items():
        for pending, _, tier, kind, namespace, name, action, rule_index in traces[trace].hits:
            key = (bucket, pending, tier, kind, namespace, name, rule_index, action)
            known = hits.get(key)
            if known is None:
                hits[key] = list(sums)
            else:
                for index, value in enumerate(sums):
                    known[index] += value
    edge, hit = _TUPLES.edge, _TUPLES.hit
    return RollupDeltas(
        [edge(key[0], key[1:], sums) for key, sums in edges.items()],
        [hit(key[0], key[1:], sums) for key, sums in hits.items()],
        {key[0] // 3600 for key in edges},
    )
