"""The facts one direction of one flow offers the rule matchers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ringfence.engine.endpoint import Entity

PROTOCOL_NUMBERS: Final[dict[str, int]] = {
    "tcp": 6,
    "udp": 17,
    "icmp": 1,
    "icmpv6": 58,
    "icmp6": 58,
    "ipv6-icmp": 58,
    "sctp": 132,
    "udplite": 136,
}
ICMP_PROTOCOLS: Final = frozenset({1, 58})
PORT_PROTOCOLS: Final = frozenset({6, 17, 132})


def protocol_number(protocol: str | int | None) -> int | None:
    """The IP protocol number of a rule or flow protocol (``TCP``, ``udp``, ``"6"``, 17); None if unknown."""
    if protocol is None:
        return None
    if isinstance(protocol, int):
        return protocol if 0 <= protocol <= 255 else None
    text = protocol.strip().lower()
    if text.isdigit():
        number = int(text)
        return number if number <= 255 else None
    return PROTOCOL_NUMBERS.get(text)


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything a rule criterion may read: both sides, protocol, ports, domains, destination service.

    ``egress`` tells which direction is evaluated (rules' ``source`` always reads ``source``, their
    ``destination`` reads ``dest``). ``None`` means the record does not hold the fact.
    """

    source: Entity
    dest: Entity
    proto: int | None
    source_port: int | None
    dest_port: int | None
    domains: tuple[str, ...]
    egress: bool
    service_namespace: str | None = None
    service_name: str | None = None

    @property
    def ip_version(self) -> int | None:
        """4 or 6, from whichever address is known (or the ICMP flavour); None when nothing tells."""
        version = self.source.ip_version or self.dest.ip_version
        if version is not None:
            return version
        if self.proto == 1:
            return 4
        if self.proto == 58:
            return 6
        return None
