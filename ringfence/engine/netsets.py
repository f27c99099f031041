"""Network sets: lookup by name, by the addresses they hold, and by their allowed egress domains.

The dataplane puts a network set's CIDRs into the IP set of every rule selector that matches the set's
labels, so a packet matches through *every* set that contains its address (not only the longest
prefix, which Calico uses merely to *name* the set in a flow log). :meth:`NetworkSetIndex.containing`
therefore returns all containing sets, longest prefix first.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, TypeAlias

from ringfence.engine.domains import DomainPattern, any_domain_matches, compile_domains
from ringfence.engine.identity import Identity, IdentityFactory
from ringfence.engine.tristate import MAYBE, NO, YES, Tri
from ringfence.model import GlobalNetworkSet, NetworkSet

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

PRIVATE_NETWORKS: Final[tuple[IPNetwork, ...]] = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"),
    ipaddress.ip_network("fc00::/7"),
)
"""What flow logs call ``pvt`` (RFC 1918 and IPv6 unique-local); everything else is ``pub``."""

EVERYWHERE: Final[tuple[IPNetwork, ...]] = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def _complement(networks: Sequence[IPNetwork]) -> tuple[IPNetwork, ...]:
    remaining: list[IPNetwork] = list(EVERYWHERE)
    for excluded in networks:
        next_round: list[IPNetwork] = []
        for net in remaining:
            if net.version == excluded.version and excluded.subnet_of(net):  # type: ignore[arg-type]
                next_round.extend(net.address_exclude(excluded))  # type: ignore[arg-type]
            else:
                next_round.append(net)
        remaining = next_round
    return tuple(sorted(remaining, key=lambda n: (n.version, n)))


PUBLIC_NETWORKS: Final[tuple[IPNetwork, ...]] = _complement(PRIVATE_NETWORKS)


def region_of_name_aggr(name_aggr: str) -> tuple[IPNetwork, ...]:
    """The address space a ``net`` endpoint without IP lies in: ``pvt``, ``pub`` or anywhere."""
    if name_aggr == "pvt":
        return PRIVATE_NETWORKS
    if name_aggr == "pub":
        return PUBLIC_NETWORKS
    return EVERYWHERE


def parse_network(text: str) -> IPNetwork:
    """A CIDR or a bare address (a host network), host bits masked as Calico does; ValueError if malformed."""
    return ipaddress.ip_network(text.strip(), strict=False)


@lru_cache(maxsize=65536)
def parse_address(text: str) -> IPAddress | None:
    """An endpoint IP from a flow record, None when it is not an address."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def networks_contain(networks: Sequence[IPNetwork], address: IPAddress) -> bool:
    """Whether ``address`` lies in one of ``networks``."""
    return any(address in net for net in networks)


def region_membership(networks: Sequence[IPNetwork], region: Sequence[IPNetwork]) -> Tri:
    """Whether an unknown address somewhere in ``region`` lies in ``networks``.

    ``YES`` when every part of the region lies inside one of the networks, ``NO`` when nothing
    overlaps, ``MAYBE`` otherwise.
    """
    covered = True
    overlap = False
    for part in region:
        inside = False
        for net in networks:
            if net.version != part.version:
                continue
            if part.subnet_of(net):  # type: ignore[arg-type]
                inside = overlap = True
                break
            if net.subnet_of(part) or part.overlaps(net):  # type: ignore[arg-type]
                overlap = True
        covered = covered and inside
    if covered and region:
        return YES
    return MAYBE if overlap else NO


@dataclass(frozen=True, slots=True, eq=False)
class NetworkSetEntry:
    """One compiled network set."""

    name: str
    namespace: str | None
    identity: Identity
    nets: tuple[IPNetwork, ...]
    domains: tuple[DomainPattern, ...]


class NetworkSetIndex:
    """Every network set of an engine, indexed by name, by prefix and by domain."""

    def __init__(self, sets: Iterable[NetworkSet | GlobalNetworkSet], identities: IdentityFactory) -> None:
        self.entries: list[NetworkSetEntry] = []
        self._by_name: dict[tuple[str | None, str], NetworkSetEntry] = {}
        # (version, prefix length) -> network address as int -> sets holding that exact network
        self._by_prefix: dict[tuple[int, int], dict[int, list[NetworkSetEntry]]] = {}
        self._containing_cache: dict[IPAddress, tuple[NetworkSetEntry, ...]] = {}
        self._domain_cache: dict[tuple[str, ...], tuple[NetworkSetEntry, ...]] = {}
        for resource in sets:
            namespace = resource.metadata.namespace if isinstance(resource, NetworkSet) else None
            identity = identities.network_set(resource.name, namespace, resource.metadata.labels.items())
            entry = NetworkSetEntry(
                resource.name,
                namespace,
                identity,
                tuple(parse_network(net) for net in resource.nets),
                compile_domains(resource.allowed_egress_domains),
            )
            self.entries.append(entry)
            self._by_name[(namespace, resource.name)] = entry
            for net in entry.nets:
                bucket = self._by_prefix.setdefault((net.version, net.prefixlen), {})
                bucket.setdefault(int(net.network_address), []).append(entry)
        # longest prefix first, so results come out in the order Calico names sets
        self._prefixes = sorted(self._by_prefix, key=lambda key: -key[1])
        self.has_domains = any(entry.domains for entry in self.entries)

    def named(self, name: str, namespace: str | None) -> NetworkSetEntry | None:
        """The set a flow endpoint of type ``ns`` names: a NetworkSet of its namespace, else a GlobalNetworkSet."""
        if namespace is not None:
            found = self._by_name.get((namespace, name))
            if found is not None:
                return found
        return self._by_name.get((None, name))

    def containing(self, address: IPAddress) -> tuple[NetworkSetEntry, ...]:
        """Every set with a CIDR holding ``address``, longest prefix first, each once."""
        found = self._containing_cache.get(address)
        if found is not None:
            return found
        value = int(address)
        width = address.max_prefixlen
        result: list[NetworkSetEntry] = []
        for version, prefixlen in self._prefixes:
            if version != address.version:
                continue
            network = value >> (width - prefixlen) << (width - prefixlen) if prefixlen else 0
            for entry in self._by_prefix[(version, prefixlen)].get(network, ()):
                if entry not in result:
                    result.append(entry)
        found = tuple(result)
        self._containing_cache[address] = found
        return found

    def overlapping(self, region: Sequence[IPNetwork]) -> tuple[tuple[NetworkSetEntry, Tri], ...]:
        """Sets an unknown address within ``region`` may belong to, with ``YES`` when it surely does."""
        result: list[tuple[NetworkSetEntry, Tri]] = []
        for entry in self.entries:
            membership = region_membership(entry.nets, region)
            if membership != NO:
                result.append((entry, membership))
        return tuple(result)

    def allowing_domains(self, domains: tuple[str, ...]) -> tuple[NetworkSetEntry, ...]:
        """Sets whose ``allowedEgressDomains`` match one of ``domains``."""
        if not domains or not self.has_domains:
            return ()
        found = self._domain_cache.get(domains)
        if found is None:
            found = tuple(
                entry for entry in self.entries if entry.domains and any_domain_matches(entry.domains, domains)
            )
            self._domain_cache[domains] = found
        return found
