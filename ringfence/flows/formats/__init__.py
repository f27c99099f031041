"""Flow-record parsers: Calico Enterprise flow logs, Goldmane flows and Hubble flows -> :class:`Flow`.

Each parser takes one decoded JSON record (a mapping) and returns a
:class:`~ringfence.flows.record.Flow`, or raises :class:`FlowRecordError` naming the field and what
is wrong with it. They never guess: a missing, mistyped or absurd value is an error.
"""

from ringfence.flows.formats.calico import parse_calico
from ringfence.flows.formats.detect import PARSERS, FlowFormat, detect_format, parse_record
from ringfence.flows.formats.errors import FlowRecordError
from ringfence.flows.formats.goldmane import parse_goldmane
from ringfence.flows.formats.hubble import parse_hubble

__all__ = [
    "PARSERS",
    "FlowFormat",
    "FlowRecordError",
    "detect_format",
    "parse_calico",
    "parse_goldmane",
    "parse_hubble",
    "parse_record",
]
