"""Calico flow-log lines straight to staging rows and COPY tuples: the collector's hot path.

Most lines a collector sees are Calico flow logs whose records repeat a few thousand combinations of
endpoints, trace, service and node; only the times and counters change. :class:`CalicoRowReader`
decodes a line with msgspec into :class:`CalicoLine` (the times and counters as integers, the rest as
raw JSON text), looks its combination up by that text, and appends the row and its binary COPY tuple
built around the combination's cached, already-encoded columns (:mod:`services.common.db.flow_copy`).

It only *accepts*: a line it is not sure of (a combination not seen yet, a time or counter of another
type or out of range, non-ASCII bytes, a NUL escape) makes :meth:`CalicoRowReader.add` answer False,
and the caller takes the full path (orjson, ``parse_calico``, :class:`RowEncoder`), which either
accepts the record (and the reader learns its combination from the row with :meth:`~CalicoRowReader.learn`)
or refuses it with the reason. So both paths accept the same records and produce the same rows, and
every reason for a refusal comes from ``parse_calico`` itself.

The combination is keyed by the raw JSON text of every field ``parse_calico`` reads except the times
and counters: equal text decodes to equal values, so a line whose texts equal those of a line the full
path accepted has that line's row, whatever their types; other spellings of the same values are only
other combinations. One bytes key hashes and compares faster than a tuple of decoded values (measured on
``bench/flowgen.py`` lines: decode, key and lookup 4.8 -> 3.7 us). Both decoders take the last of
repeated names. Non-ASCII lines stay on the full path because msgspec does not check the UTF-8 of the
fields it skips or keeps raw, and orjson refuses bad UTF-8.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Final

import msgspec
from msgspec import UNSET, Raw

from services.collector.rows import COUNTER_BITS, COUNTER_FIELDS, EncodedBatch, LabelSet
from services.common.db.flow_copy import ENCODE_ERRORS, RecordEncoder, encode_static, encode_trace, record_encoder
from services.common.db.flows import STAGE_COLUMNS, StageRow, TraceSet

_CACHE_LIMIT: Final = 16_384
"""Combinations kept (then the cache starts over). One costs about 3.5 KB with what it holds, so the
cache stays under 60 MB; ``bench/flowgen.py``'s cluster of 200 workloads on 30 nodes has about 4,000."""
_NULL: Final = Raw(b"null")
_ABSENT: Final = Raw(b"")
"""An absent ``reporter`` (no JSON text is empty): detection needs it told apart from ``null``."""


class CalicoLine(msgspec.Struct, gc=False):
    """A Calico flow-log line as the fast path reads it: the times and counters typed, every other field that
    ``parse_calico`` reads kept as its raw JSON text (what the combination is known by).

    The detection markers (``flow``, ``Key``...) are here so that a line of another format is told apart
    as :func:`services.collector.parse.is_calico` does; other fields are skipped.
    """

    start_time: int | None = None
    end_time: int | None = None
    source_type: Raw = _NULL
    source_name_aggr: Raw = _NULL
    source_namespace: Raw = _NULL
    source_name: Raw = _NULL
    source_labels: Raw = _NULL
    source_ip: Raw = _NULL
    source_port: Raw = _NULL
    dest_type: Raw = _NULL
    dest_name_aggr: Raw = _NULL
    dest_namespace: Raw = _NULL
    dest_name: Raw = _NULL
    dest_labels: Raw = _NULL
    dest_ip: Raw = _NULL
    dest_port: Raw = _NULL
    reporter: Raw = _ABSENT
    action: Raw = _NULL
    proto: Raw = _NULL
    policies: Raw = _NULL
    dest_domains: Raw = _NULL
    dest_service_namespace: Raw = _NULL
    dest_service_name: Raw = _NULL
    dest_service_port: Raw = _NULL
    dest_service_port_num: Raw = _NULL
    host: Raw = _NULL
    num_flows: int | None = None
    num_flows_started: int | None = None
    num_flows_completed: int | None = None
    packets_in: int | None = None
    packets_out: int | None = None
    bytes_in: int | None = None
    bytes_out: int | None = None
    http_requests_allowed_in: int | None = None
    http_requests_denied_in: int | None = None
    flow: Any = UNSET
    Key: Any = UNSET
    key: Any = UNSET
    verdict: Any = UNSET
    traffic_direction: Any = UNSET
    l4: Any = UNSET
    IP: Any = UNSET


_DECODE: Final = msgspec.json.Decoder(CalicoLine).decode
_RAW_TEXTS: Final = attrgetter(*(field.name for field in msgspec.structs.fields(CalicoLine) if field.type is Raw))
"""The fields kept as raw text: every field ``parse_calico`` reads but the times and counters."""
_JOIN: Final = b"\n".join
_MARKERS: Final = attrgetter("flow", "Key", "key", "verdict", "traffic_direction", "l4", "IP")
_NO_MARKERS: Final = (UNSET,) * 7
_COUNTS: Final = attrgetter(*COUNTER_FIELDS)
# What an absent (or null) counter stands for, in the row order of rows.COUNTER_FIELDS.
_COUNTER_DEFAULTS: Final = (1, 0, 0, 0, 0, 0, 0, 0, 0)
NUL_ESCAPE: Final = b"\\u0000"
"""How a NUL character, which PostgreSQL text cannot hold, is written in JSON."""
_SRC_LABELS: Final = STAGE_COLUMNS.index("src_labels")
_DST_LABELS: Final = STAGE_COLUMNS.index("dst_labels")


def _key(line: CalicoLine) -> bytes:
    """What a line's combination is known by: the raw texts of every field ``parse_calico`` reads but the times
    and counters, one per line of the key (a flow-log line holds no newline)."""
    return _JOIN(_RAW_TEXTS(line))


@dataclass(frozen=True, slots=True)
class _Combination:
    """What every record of one combination stores besides its times and counters."""

    serial: int  # unique for the reader's life: a batch registers a combination's label sets and trace once
    static: tuple[Any, ...]  # the row's columns from reporter to host (row[2:-10])
    encode: RecordEncoder | None  # a record's COPY tuple (None: not encodable, asyncpg will say why)
    trace_id: int | None
    trace: TraceSet | None
    label_sets: tuple[LabelSet, ...]


def decode(line: bytes) -> CalicoLine | None:
    """``line`` as a :class:`CalicoLine`, or None when it is not one of the shape the fast path takes."""
    if not line.isascii() or (b"\\" in line and NUL_ESCAPE in line):  # one byte is found faster than six
        return None
    try:
        return _DECODE(line)
    except msgspec.DecodeError:  # includes ValidationError: a value of another type
        return None


class CalicoRowReader:
    """Builds staging rows from Calico lines whose combination it has seen; keep one per process."""

    def __init__(self) -> None:
        self._combinations: dict[bytes, _Combination] = {}
        self._serials = itertools.count()

    def add(self, batch: EncodedBatch, line: bytes, earliest: int, latest: int, *, detect: bool) -> bool:
        """Append the row of ``line`` to ``batch`` and answer True, or answer False (nothing appended).

        False means "take the full path": the line is new to the reader or not plainly valid. Records
        starting before ``earliest`` or ending after ``latest`` are left to the full path too. With
        ``detect`` (no format given) a line must also look like Calico's: a ``reporter`` and no marker of
        another format.
        """
        record = decode(line)
        if record is None:
            return False
        if detect and (not record.reporter or _MARKERS(record) != _NO_MARKERS):
            return False
        start = record.start_time
        end = record.end_time
        if start is None or end is None or start < earliest or end < start or end > latest or start < 0:
            return False
        combination = self._combinations.get(_key(record))
        if combination is None:
            return False
        counts: tuple[Any, ...] = _COUNTS(record)
        if None in counts:
            counts = tuple(
                default if value is None else value for value, default in zip(counts, _COUNTER_DEFAULTS, strict=True)
            )
        num_flows, started, completed, packets_in, packets_out, bytes_in, bytes_out, allowed, denied = counts
        # Negative counts set the sign bit: one shift tests "all in [0, 2**48)".
        if (
            num_flows | started | completed | packets_in | packets_out | bytes_in | bytes_out | allowed | denied
        ) >> COUNTER_BITS:
            return False
        batch.rows.append((start, end, *combination.static, *counts, combination.trace_id))
        copy_data = batch.copy_data
        if copy_data is not None:
            encode = combination.encode
            if encode is None:
                batch.copy_data = None
            else:
                copy_data.append(
                    encode(
                        start,
                        end,
                        num_flows,
                        started,
                        completed,
                        packets_in,
                        packets_out,
                        bytes_in,
                        bytes_out,
                        allowed,
                        denied,
                    )
                )
        if combination.serial not in batch.combinations:
            batch.combinations.add(combination.serial)
            for label_id, texts in combination.label_sets:
                batch.label_sets[label_id] = texts
            if combination.trace is not None:
                batch.trace_sets[combination.trace.id] = combination.trace
        batch.days.add(start // 86_400)
        return True

    def learn(self, line: bytes, batch: EncodedBatch) -> None:
        """Remember the combination of ``line``, whose row the full path has just appended to ``batch``."""
        record = decode(line)
        if record is None:
            return
        key = _key(record)
        if key in self._combinations:
            return
        row: StageRow = batch.rows[-1]
        static = row[2:-10]
        trace_id = row[-1]
        try:
            encode: RecordEncoder | None = record_encoder(encode_static(static), encode_trace(trace_id))
        except ENCODE_ERRORS:
            encode = None
        label_ids = (row[_SRC_LABELS], row[_DST_LABELS])
        if len(self._combinations) >= _CACHE_LIMIT:
            self._combinations.clear()
        self._combinations[key] = _Combination(
            next(self._serials),
            static,
            encode,
            trace_id,
            None if trace_id is None else batch.trace_sets[trace_id],
            tuple((label_id, batch.label_sets[label_id]) for label_id in label_ids if label_id is not None),
        )
