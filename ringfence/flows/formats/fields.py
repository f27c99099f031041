"""Readers of single JSON values shared by the format parsers: strict types, interned strings.

Each reader takes the decoded value and the dotted field path used in its error, returns the
normalised Python value and raises :class:`FlowRecordError` for anything it cannot take as it is.
Values that repeat across millions of records (names, labels, IPs, protocols) are interned or
cached so records share them.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Final

from ringfence.flows.formats.errors import FlowRecordError
from ringfence.flows.hits import PolicyHitError, parse_hit
from ringfence.flows.record import NO_LABELS, LabelPairs, PolicyHit

intern = sys.intern

MISSING: Final[Any] = object()
"""Sentinel for ``mapping.get(key, MISSING)``: absent, as opposed to ``null``."""

NONE_MARKERS: Final = frozenset({"", "-"})
"""Text Calico writes for "no value" (``-``) and what protobuf JSON leaves for an empty string."""

PROTOCOL_NAMES: Final[Mapping[int, str]] = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp", 136: "udplite"}
"""IANA numbers written by name, so one protocol has one spelling whichever format carried it."""

_PRIVATE_V4: Final = (
    ipaddress.IPv4Network("10.0.0.0/8"),
    ipaddress.IPv4Network("172.16.0.0/12"),
    ipaddress.IPv4Network("192.168.0.0/16"),
)
_PRIVATE_V6: Final = ipaddress.IPv6Network("fc00::/7")


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def missing(field: str) -> FlowRecordError:
    """The error for a required field that is absent or null."""
    return FlowRecordError(field, "required field is missing")


def read_int(value: Any, field: str) -> int:
    """A JSON integer (an integral float such as ``3.0`` too; booleans and text are refused)."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    if value is None or value is MISSING:
        raise missing(field)
    raise FlowRecordError(field, f"must be an integer, found {json_type(value)} {value!r}")


def read_int64(value: Any, field: str) -> int:
    """An integer that protobuf JSON may have written as decimal text (``"1712000000"``)."""
    if type(value) is str:
        digits = value.removeprefix("-")
        if digits.isascii() and digits.isdigit():
            return int(value)
        raise FlowRecordError(field, f"must be an integer, found string {value!r}")
    return read_int(value, field)


def read_time(value: Any, field: str) -> int:
    """Unix seconds, not negative."""
    seconds = read_int(value, field)
    if seconds < 0:
        raise FlowRecordError(field, f"time {seconds} is negative")
    return seconds


def check_window(start: int, end: int, end_field: str) -> None:
    """Refuse a record that ends before it starts."""
    if end < start:
        raise FlowRecordError(end_field, f"end time {end} is before start time {start}")


def read_count(value: Any, field: str, default: int = 0) -> int:
    """A counter: absent or null gives ``default``; negative counts are refused."""
    if type(value) is int and value >= 0:
        return value
    if value is None or value is MISSING:
        return default
    count = read_int(value, field)
    if count < 0:
        raise FlowRecordError(field, f"count {count} is negative")
    return count


def read_port(value: Any, field: str) -> int | None:
    """A port number 0-65535; null (aggregated away) gives None."""
    if value is None or value is MISSING:
        return None
    port = read_int(value, field)
    if not 0 <= port <= 65535:
        raise FlowRecordError(field, f"port {port} is outside 0-65535")
    return port


def read_text(value: Any, field: str) -> str:
    """A required, non-empty string (interned)."""
    if type(value) is str:
        if value:
            return intern(value)
        raise FlowRecordError(field, "must not be empty")
    if value is None or value is MISSING:
        raise missing(field)
    raise FlowRecordError(field, f"must be a string, found {json_type(value)}")


def read_optional_text(value: Any, field: str) -> str | None:
    """A string where ``-``, empty, null and absent all mean "none"."""
    if type(value) is str:
        return None if value in NONE_MARKERS else intern(value)
    if value is None or value is MISSING:
        return None
    raise FlowRecordError(field, f"must be a string, found {json_type(value)}")


@lru_cache(maxsize=65536)
def _canonical_ip(text: str) -> str | None:
    try:
        return intern(str(ipaddress.ip_address(text)))
    except ValueError:
        return None


def read_ip(value: Any, field: str) -> str | None:
    """An IPv4 or IPv6 address in canonical text; null, empty and ``-`` give None."""
    if value is None or value is MISSING:
        return None
    if type(value) is not str:
        raise FlowRecordError(field, f"must be an IP address string, found {json_type(value)}")
    if value in NONE_MARKERS:
        return None
    ip = _canonical_ip(value)
    if ip is None:
        raise FlowRecordError(field, f"{value!r} is not an IP address")
    return ip


@lru_cache(maxsize=65536)
def network_name_aggr(ip: str) -> str:
    """Calico's ``name_aggr`` of an address outside the cluster: ``pvt`` (RFC 1918, IPv6 ULA) or ``pub``."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv4Address):
        private = any(address in network for network in _PRIVATE_V4)
    else:
        private = address in _PRIVATE_V6
    return "pvt" if private else "pub"


@lru_cache(maxsize=16384)
def _label_pairs(items: tuple[str, ...]) -> LabelPairs:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            msg = f"label {item!r} has an empty key"
            raise ValueError(msg)
        pairs[intern(key)] = intern(value) if sep else ""
    return tuple(sorted(pairs.items()))


def label_items(items: Iterable[str], field: str) -> LabelPairs:
    """Labels from ``k=v`` strings (a value may itself hold ``=``; ``k`` alone means an empty value)."""
    key = tuple(items)
    for item in key:
        if type(item) is not str:
            raise FlowRecordError(field, f"labels must be 'key=value' strings, found {json_type(item)}")
    try:
        return _label_pairs(key)
    except ValueError as error:
        raise FlowRecordError(field, str(error)) from None


def read_labels(value: Any, field: str) -> LabelPairs:
    """Labels as Calico (``{"labels": ["k=v"]}``), Goldmane (``["k=v"]``) or a plain map write them."""
    if value is None or value is MISSING:
        return NO_LABELS
    if type(value) is list:
        return label_items(value, field)
    if isinstance(value, Mapping):
        inner = value.get("labels", MISSING)
        if type(inner) is list:
            return label_items(inner, f"{field}.labels")
        if inner is None:
            return NO_LABELS
        for key, text in value.items():
            if type(key) is not str or type(text) is not str:
                raise FlowRecordError(field, "a label map must map strings to strings")
        return label_items((f"{key}={text}" for key, text in value.items()), field)
    raise FlowRecordError(field, f"must be a list of 'key=value' strings or an object, found {json_type(value)}")


def read_domains(value: Any, field: str) -> tuple[str, ...]:
    """Destination domains: a list, null, or one string (comma-separated; ``-`` for none)."""
    if value is None or value is MISSING:
        return ()
    if type(value) is str:
        if value in NONE_MARKERS:
            return ()
        return tuple(intern(part.strip()) for part in value.split(",") if part.strip())
    if type(value) is list:
        for item in value:
            if type(item) is not str or not item:
                raise FlowRecordError(field, f"domains must be non-empty strings, found {json_type(item)} {item!r}")
        return tuple(map(intern, value))
    raise FlowRecordError(field, f"must be a list of domain names, found {json_type(value)}")


@lru_cache(maxsize=1024)
def _protocol(text: str) -> str | None:
    if text.isascii() and text.isdigit():
        number = int(text)
        if number > 255:
            return None
        return PROTOCOL_NAMES.get(number, str(number))
    if not text or not text.isascii() or not text.isalnum():
        return None
    return intern(text.lower())


def read_proto(value: Any, field: str) -> str:
    """An L4 protocol, lower case (``tcp``); IANA numbers for the usual protocols become their name."""
    if type(value) is str:
        proto = _protocol(value)
        if proto is None:
            raise FlowRecordError(field, f"{value!r} is not a protocol name or number 0-255")
        return proto
    if type(value) is int:
        if 0 <= value <= 255:
            return PROTOCOL_NAMES.get(value) or intern(str(value))
        raise FlowRecordError(field, f"protocol number {value} is outside 0-255")
    if value is None or value is MISSING:
        raise missing(field)
    raise FlowRecordError(field, f"must be a protocol name or number, found {json_type(value)}")


@lru_cache(maxsize=4096)
def _trace(items: tuple[str, ...]) -> tuple[PolicyHit, ...]:
    return tuple(parse_hit(item) for item in items)


def read_trace(value: Any, field: str) -> tuple[PolicyHit, ...]:
    """A list of policy-hit strings (null or absent: no hits)."""
    if value is None or value is MISSING:
        return ()
    if type(value) is not list:
        raise FlowRecordError(field, f"must be a list of policy-hit strings, found {json_type(value)}")
    for position, item in enumerate(value):
        if type(item) is not str:
            raise FlowRecordError(f"{field}[{position}]", f"must be a policy-hit string, found {json_type(item)}")
    items = tuple(value)
    try:
        return _trace(items)
    except PolicyHitError as error:
        # The trace parses in order, so the error is about the first bad hit; name its position.
        raise FlowRecordError(f"{field}[{items.index(error.hit)}]", str(error)) from None
