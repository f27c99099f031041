"""Raw lines -> staging rows and rejects: the CPU half of ingestion, free of I/O so it can run anywhere.

:func:`parse_lines` is a plain function of picklable arguments, so the pipeline can run it inline, in a
thread or in a worker process. The row encoder's caches live for the life of the process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from ringfence.flows.formats import FlowRecordError, parse_calico, parse_record
from ringfence.flows.record import Flow
from services.collector.calico_rows import NUL_ESCAPE, CalicoRowReader
from services.collector.rollups import group_rows
from services.collector.rows import EncodedBatch, RowEncoder, RowError
from services.common.db.rejects import Reject

MAX_ERRORS: Final = 20
"""Errors reported back per request or batch (every reject is stored regardless)."""

_ENCODER: RowEncoder | None = None
_CALICO_ROWS: CalicoRowReader | None = None
NUL_REASON: Final = "a string holds a NUL character (\\u0000), which cannot be stored"
OTHER_FORMAT_SKIP: Final = 64
"""Lines after one of another format (Goldmane, Hubble) that go straight to the full path: the fast path's
decode would be wasted on them, and a file rarely mixes formats line by line."""


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Times a record may carry: not older than retention keeps (its partition is gone), not a day ahead."""

    earliest_start: int
    latest_end: int


@dataclass(slots=True)
class ParsedChunk:
    """The outcome of parsing consecutive lines: rows to store and the lines refused."""

    encoded: EncodedBatch
    row_lines: list[int]  # for each row, the index of its line in the chunk
    rejects: list[Reject]
    errors: list[dict[str, Any]] = field(default_factory=list)  # the first MAX_ERRORS, {"line", "error"}
    _groups: tuple[int, list[list[Any]]] | None = None

    @property
    def accepted(self) -> int:
        """Rows the parser accepted."""
        return len(self.encoded.rows)

    def groups(self) -> list[list[Any]]:
        """The rows grouped for the rollups and the inventory (:func:`group_rows`, computed once per row count)."""
        rows = self.encoded.rows
        if self._groups is None or self._groups[0] != len(rows):
            self._groups = (len(rows), group_rows(rows))
        return self._groups[1]


def encoder() -> RowEncoder:
    """This process's row encoder (created on first use)."""
    global _ENCODER  # noqa: PLW0603 - one cache per process, shared by every batch it parses
    if _ENCODER is None:
        _ENCODER = RowEncoder()
    return _ENCODER


def calico_rows() -> CalicoRowReader:
    """This process's Calico fast path (created on first use)."""
    global _CALICO_ROWS  # noqa: PLW0603 - one cache per process, shared by every batch it parses
    if _CALICO_ROWS is None:
        _CALICO_ROWS = CalicoRowReader()
    return _CALICO_ROWS


def is_calico(record: Any, fmt: str | None) -> bool:
    """Whether ``record`` is a Calico flow log: given as such, or detected as ``detect_format`` would.

    ``detect_format`` answers "calico" exactly when no Goldmane or Hubble marker is present (top level
    or inside "flow") and a Calico field is: checking that directly is a few dict look-ups.
    """
    if type(record) is not dict:
        return False
    if fmt == "calico":
        return True
    return (
        fmt is None
        and "reporter" in record
        and "flow" not in record
        and "Key" not in record
        and "key" not in record
        and "verdict" not in record
        and "traffic_direction" not in record
        and "l4" not in record
        and "IP" not in record
    )


def parse_lines(
    lines: Sequence[bytes],
    offsets: Sequence[int],
    *,
    source: str,
    first_line_no: int,
    fmt: str | None,
    window: TimeWindow,
    overlong: frozenset[int] = frozenset(),
) -> ParsedChunk:
    """Parse consecutive raw lines (without their newline); blank lines are skipped, not rejected.

    ``offsets[i]`` is the byte offset of ``lines[i]`` in its source and ``first_line_no`` the 1-based
    number of ``lines[0]``; ``overlong`` holds the indexes of lines cut because they were too long.
    """
    row_encoder = encoder()
    fast = calico_rows()
    fast_add = fast.add
    batch = row_encoder.new_batch()
    chunk = ParsedChunk(batch, [], [])
    add = row_encoder.add
    row_lines = chunk.row_lines
    loads = orjson.loads
    earliest, latest = window.earliest_start, window.latest_end
    try_fast = fmt in {None, "calico"}
    detect = fmt is None
    fast_from = 0  # after a line of another format, the next ones skip the fast path's attempt for a while
    for index, line in enumerate(lines):
        if index in overlong:
            _reject(chunk, source, first_line_no + index, offsets[index], line, "line is too long")
            continue
        if try_fast and index >= fast_from and fast_add(batch, line, earliest, latest, detect=detect):
            row_lines.append(index)
            continue
        try:
            record = loads(line)
        except orjson.JSONDecodeError as error:
            if line.strip():
                _reject(chunk, source, first_line_no + index, offsets[index], line, f"not JSON: {error}")
            continue
        calico = is_calico(record, fmt)
        if not calico:
            fast_from = index + OTHER_FORMAT_SKIP
        try:
            flow = parse_checked(record, fmt, line, earliest, latest, calico=calico)
            add(batch, flow)
        except (FlowRecordError, RowError) as error:
            _reject(chunk, source, first_line_no + index, offsets[index], line, error.reason, error.field)
            continue
        except Exception as error:  # noqa: BLE001 - a parser bug must cost one line, not stall the source
            reason = f"unexpected parser failure: {type(error).__name__}: {error}"
            _reject(chunk, source, first_line_no + index, offsets[index], line, reason)
            continue
        row_lines.append(index)
        if calico and try_fast:
            fast.learn(line, batch)
    chunk.groups()  # here, where parsing runs (a thread), rather than on the writer's path
    return chunk


def parse_checked(record: Any, fmt: str | None, line: bytes, earliest: int, latest: int, *, calico: bool) -> Flow:
    """The record's flow, refused (:class:`FlowRecordError`) when the store cannot keep it."""
    # The parser's own verdict first: a bad value is reported for its field even when it holds a NUL.
    flow = parse_calico(record) if calico else parse_record(record, fmt)
    if NUL_ESCAPE in line and holds_nul(record):
        raise FlowRecordError("", NUL_REASON)
    if flow.start_time < earliest:
        raise FlowRecordError(
            "start_time", f"time {flow.start_time} is older than the retention period (before {earliest})"
        )
    if flow.end_time > latest:
        raise FlowRecordError("end_time", f"time {flow.end_time} is more than a day in the future")
    return flow


def _reject(  # noqa: PLR0917 - a private helper called from one loop
    chunk: ParsedChunk, source: str, line_no: int, offset: int, line: bytes, reason: str, field: str = ""
) -> None:
    chunk.rejects.append(Reject.from_line(source, line_no, offset, line, reason=reason, field=field))
    if len(chunk.errors) < MAX_ERRORS:
        chunk.errors.append({"line": line_no, "error": f"{field}: {reason}" if field else reason})


def holds_nul(value: object) -> bool:
    """Whether a decoded JSON value holds a NUL character anywhere (PostgreSQL text cannot store one)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(holds_nul(item) for item in value)
    return False
