"""Which format a decoded flow record is in, and parsing a record of any format."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TypeAlias

from ringfence.flows.formats.calico import parse_calico
from ringfence.flows.formats.errors import FlowRecordError
from ringfence.flows.formats.fields import json_type
from ringfence.flows.formats.goldmane import parse_goldmane
from ringfence.flows.formats.hubble import parse_hubble
from ringfence.flows.record import Flow

FlowFormat: TypeAlias = Literal["calico", "goldmane", "hubble"]

PARSERS: Final[Mapping[str, Callable[[Mapping[str, Any]], Flow]]] = {
    "calico": parse_calico,
    "goldmane": parse_goldmane,
    "hubble": parse_hubble,
}
"""Parser of each format name (the names ``ringfence ingest --format`` takes)."""

_HUBBLE_KEYS: Final = ("verdict", "traffic_direction", "l4", "IP")
_CALICO_KEYS: Final = ("source_name_aggr", "dest_name_aggr", "source_type", "reporter")


def detect_format(record: Mapping[str, Any]) -> FlowFormat:
    """Name the format of one decoded record by the fields only that format has.

    Goldmane: a ``Key``/``key`` object (possibly inside ``flow``); Hubble: ``verdict``,
    ``traffic_direction``, ``l4`` or ``IP`` (possibly inside ``flow``); Calico: the flat
    ``source_name_aggr``/``reporter`` fields. Raises :class:`FlowRecordError` when none fits.
    """
    if not isinstance(record, Mapping):
        raise FlowRecordError("", f"a flow record must be a JSON object, found {json_type(record)}")
    inner = record.get("flow")
    for candidate in (record, inner) if isinstance(inner, Mapping) else (record,):
        if isinstance(candidate.get("Key"), Mapping) or isinstance(candidate.get("key"), Mapping):
            return "goldmane"
        if any(key in candidate for key in _HUBBLE_KEYS):
            return "hubble"
    if any(key in record for key in _CALICO_KEYS):
        return "calico"
    raise FlowRecordError("", "unknown flow record format (not a Calico flow log, Goldmane or Hubble record)")


def parse_record(record: Mapping[str, Any], fmt: str | None = None) -> Flow:
    """Parse one decoded record in format ``fmt`` (detected when None).

    Raises :class:`FlowRecordError` for a record that does not parse and :class:`ValueError` for an
    unknown format name.
    """
    if fmt is None:
        fmt = detect_format(record)
    parser = PARSERS.get(fmt)
    if parser is None:
        msg = f"unknown flow format {fmt!r} (expected one of {', '.join(PARSERS)})"
        raise ValueError(msg)
    return parser(record)
