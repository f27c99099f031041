"""Staging rows -> the batch's rows grouped by everything the rollups and the inventory read.

A batch of thousands of records collapses to far fewer groups (records of one window that differ only
by node, counters or names the rollups do not keep). The collector sums them here, in one pass with
C-level key building, and sends only the groups; PostgreSQL derives the flow-edge, policy-hit and
inventory upserts from them (:func:`services.common.db.flows.add_rollups`,
:func:`services.common.db.inventory.record_seen`), so its share of a batch is little more than the
COPY of the rows themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any, Final

import orjson

from services.common.db.flows import GROUP_COLUMNS, STAGE_COLUMNS, StageRow

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


def groups_json(groups: Sequence[Sequence[Any]]) -> str:
    """Groups as the JSON array of arrays the upserts read; sums past 64 bits as decimal text."""
    try:
        return orjson.dumps(groups).decode()
    except TypeError:  # orjson refuses integers past 64 bits; SQL casts text to numeric alike
        wide = [[str(value) if type(value) is int and value >= 2**63 else value for value in row] for row in groups]
        return orjson.dumps(wide).decode()
