"""Protocols and destination ports as rules spell them: canonical names, merged sorted port ranges."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from ringfence.model import Port, PortRange, Protocol

_PROTOCOL_NAMES: Final = {
    "tcp": "TCP",
    "udp": "UDP",
    "icmp": "ICMP",
    "icmpv6": "ICMPv6",
    "icmp6": "ICMPv6",
    "ipv6-icmp": "ICMPv6",
    "sctp": "SCTP",
    "udplite": "UDPLite",
}
_PROTOCOL_NUMBERS: Final = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP", 136: "UDPLite"}
PORT_PROTOCOLS: Final = frozenset({"TCP", "UDP", "SCTP"})
"""Protocols whose rules may carry ports."""


def rule_protocol(proto: str) -> Protocol:
    """The rule protocol of a flow's ``proto`` (``"tcp"`` -> ``"TCP"``, ``"6"`` -> ``"TCP"``, ``"47"`` -> 47)."""
    text = proto.strip().lower()
    if text in _PROTOCOL_NAMES:
        return _PROTOCOL_NAMES[text]
    if text.isdigit():
        number = int(text)
        return _PROTOCOL_NUMBERS.get(number, number)
    msg = f"unknown protocol {proto!r} in a flow record"
    raise ValueError(msg)


def has_ports(protocol: Protocol) -> bool:
    """Whether rules for ``protocol`` may name ports."""
    return protocol in PORT_PROTOCOLS


def merge_ports(ports: Iterable[Port | int]) -> tuple[Port, ...]:
    """Numbers and ranges merged into sorted, disjoint ranges (contiguous ports join); named ports last.

    >>> [str(p) for p in merge_ports([443, 80, 81, 82, PortRange(8000, 8080), 8081])]
    ['80:82', '443', '8000:8081']
    """
    spans: list[tuple[int, int]] = []
    names: set[str] = set()
    for port in ports:
        if isinstance(port, int):
            spans.append((port, port))
        elif isinstance(port, PortRange):
            spans.append((port.first, port.last))
        else:
            names.add(port)
    spans.sort()
    merged: list[list[int]] = []
    for first, last in spans:
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    result: list[Port] = [PortRange(first, last) for first, last in merged]
    result.extend(sorted(names))
    return tuple(result)
