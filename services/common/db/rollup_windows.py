"""How a time window splits over the hourly and the 5-minute rollups (flow edges, policy hits).

A window ``[from_, to)`` counts the 5-minute buckets that overlap it (flows are bucketed by start
time): ``bucket > from_ - 5 min`` and ``bucket < to``. The whole UTC hours inside the window are read
from the hourly rollup, the ragged ends from the 5-minute one. The ranges are computed here rather than
in SQL so that each part of a query prunes to its own partitions at plan time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypeAlias

RollupRanges: TypeAlias = tuple[
    bool, datetime | None, datetime | None, datetime | None, datetime | None, datetime | None, datetime | None
]
"""(use hours, hours from, hours to, 5-minute buckets after/before, 5-minute buckets from/before).

The queries read: hours ``bucket >= from AND bucket < to`` when the flag is set (a NULL bound is
unbounded); the leading 5-minute part ``bucket > after AND bucket < before``; the trailing one
``bucket >= from AND bucket < before`` (a NULL bound makes a 5-minute part empty).
"""

_BUCKET = timedelta(minutes=5)


def rollup_ranges(from_: datetime | None, to: datetime | None) -> RollupRanges:
    """The parts of ``[from_, to)`` each rollup serves (see :data:`RollupRanges`)."""
    # Hours of the rollups are UTC hours (a +05:30 zone would cut them elsewhere).
    from_, to = _utc(from_), _utc(to)
    first_hour = None if from_ is None else _ceil_hour(from_)
    end_hour = None if to is None else to.replace(minute=0, second=0, microsecond=0)
    if first_hour is not None and end_hour is not None and first_hour >= end_hour:
        # Inside one hour (or across one boundary, no whole hour): 5-minute buckets only.
        return False, None, None, _before(from_), to, None, None
    before = (_before(from_), first_hour) if from_ is not None else (None, None)
    after = (end_hour, to) if to is not None else (None, None)
    return True, first_hour, end_hour, *before, *after


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _ceil_hour(moment: datetime) -> datetime:
    hour = moment.replace(minute=0, second=0, microsecond=0)
    try:
        return hour if hour == moment else hour + timedelta(hours=1)
    except OverflowError:  # within the last hour datetime can hold: no whole hour after it
        return moment


def _before(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    try:
        return moment - _BUCKET
    except OverflowError:  # the first moment datetime can hold: no bucket starts before it
        return moment
