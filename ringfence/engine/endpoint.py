"""Flow endpoints as the engine sees them: identities for selectors, an address (or its region) for CIDRs.

How each endpoint type of a flow record matches rule criteria (calico.md section 3, points 5 and 7):

* ``wep`` (pod) and ``hep`` (host endpoint): their own labels (pods add the implicit labels and the
  inherited namespace labels); with an IP they also belong to every network set containing it.
  Without an IP they match no ``nets`` and no network set by CIDR (so ``notNets`` holds).
* ``ns`` (network set, ``name_aggr`` is its name): with an IP, every set containing it; without one,
  the named set's labels (a NetworkSet of the endpoint's namespace, else a GlobalNetworkSet; the
  record's labels when the engine does not know the set), and a CIDR criterion is decided against
  the set's own nets (inside: yes; disjoint: no; partly: uncertain). Calico names the set after the
  longest prefix holding the address, so the address also lies in every other set whose nets
  contain the named set's (yes), maybe in sets overlapping them (uncertain), and in no other set.
* ``net`` (anything else): with an IP, the sets containing it; without one, the address lies
  somewhere in ``pub`` or ``pvt`` space, so CIDR and network-set matches are uncertain unless that
  space is entirely inside or outside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ringfence.engine.identity import Identity, IdentityFactory
from ringfence.engine.netsets import (
    EVERYWHERE,
    IPAddress,
    IPNetwork,
    NetworkSetIndex,
    parse_address,
    region_membership,
    region_of_name_aggr,
)
from ringfence.engine.tristate import NO, YES, Tri
from ringfence.flows.record import Endpoint, EndpointType

CALICO_ENDPOINT_TYPES: Final = frozenset({EndpointType.WORKLOAD, EndpointType.HOST})


@dataclass(frozen=True, slots=True, eq=False)
class Entity:
    """One side of a flow, resolved against the engine's namespaces and network sets.

    ``identity`` is the endpoint's own label context (the named set for ``ns``; None for ``net``).
    ``members`` are the identities the packet's address belongs to, each with its membership (``YES``
    or, for an aggregated external address, ``MAYBE``). ``address`` is the parsed IP; without it,
    ``region`` bounds where the address lies (None: no CIDR matches at all).
    """

    type: EndpointType
    identity: Identity | None
    members: tuple[tuple[Identity, Tri], ...]
    address: IPAddress | None
    region: tuple[IPNetwork, ...] | None
    namespace: str | None

    @property
    def is_calico(self) -> bool:
        """Whether policy is enforced on this endpoint (a pod or a host endpoint)."""
        return self.type in CALICO_ENDPOINT_TYPES

    def in_networks(self, networks: tuple[IPNetwork, ...]) -> Tri:
        """Whether the packet's address on this side lies in one of ``networks``."""
        if self.address is not None:
            address = self.address
            return YES if any(address in net for net in networks) else NO
        if self.region is None:
            return NO
        return region_membership(networks, self.region)

    @property
    def ip_version(self) -> int | None:
        """4 or 6 when the address is known."""
        return None if self.address is None else self.address.version


class EntityFactory:
    """Resolves flow endpoints to entities, once per distinct endpoint (ports and pod names do not matter)."""

    __slots__ = ("_cache", "identities", "netsets")

    def __init__(self, identities: IdentityFactory, netsets: NetworkSetIndex) -> None:
        self.identities = identities
        self.netsets = netsets
        self._cache: dict[tuple[object, ...], Entity] = {}

    def resolve(self, endpoint: Endpoint) -> Entity:
        """The entity of ``endpoint``."""
        kind = endpoint.type
        if kind is EndpointType.WORKLOAD or kind is EndpointType.HOST:
            key: tuple[object, ...] = (kind, endpoint.namespace, endpoint.labels, endpoint.ip, endpoint.service_account)
        else:
            key = (kind, endpoint.namespace, endpoint.labels, endpoint.ip, endpoint.name_aggr)
        found = self._cache.get(key)
        if found is None:
            found = self._build(endpoint)
            self._cache[key] = found
        return found

    def _build(self, endpoint: Endpoint) -> Entity:
        address = parse_address(endpoint.ip) if endpoint.ip else None
        kind = endpoint.type
        if kind is EndpointType.WORKLOAD or kind is EndpointType.HOST:
            if kind is EndpointType.WORKLOAD:
                own = self.identities.workload(endpoint.labels, endpoint.namespace, endpoint.service_account)
                namespace = endpoint.namespace
            else:
                own = self.identities.host(endpoint.labels)
                namespace = None
            members = [(own, YES)]
            if address is not None:
                members.extend((entry.identity, YES) for entry in self.netsets.containing(address))
            return Entity(kind, own, tuple(members), address, None, namespace)
        if kind is EndpointType.NETWORK_SET:
            return self._network_set(endpoint, address)
        if address is not None:
            return Entity(kind, None, self._containing(address), address, None, None)
        region = region_of_name_aggr(endpoint.name_aggr)
        overlapping = tuple((entry.identity, membership) for entry, membership in self.netsets.overlapping(region))
        return Entity(kind, None, overlapping, None, region, None)

    def _network_set(self, endpoint: Endpoint, address: IPAddress | None) -> Entity:
        entry = self.netsets.named(endpoint.name_aggr, endpoint.namespace)
        if entry is not None:
            own = entry.identity
            nets: tuple[IPNetwork, ...] = entry.nets
        else:
            own = self.identities.network_set(endpoint.name_aggr, endpoint.namespace, endpoint.labels)
            nets = EVERYWHERE
        if address is not None:
            members = self._containing(address)
            if entry is None:
                members = ((own, YES), *members)
            return Entity(endpoint.type, own, members, address, None, own.namespace)
        around = tuple(
            (other.identity, membership)
            for other, membership in self.netsets.overlapping(nets)
            if other.identity is not own
        )
        return Entity(endpoint.type, own, ((own, YES), *around), None, nets, own.namespace)

    def _containing(self, address: IPAddress) -> tuple[tuple[Identity, Tri], ...]:
        return tuple((entry.identity, YES) for entry in self.netsets.containing(address))
