"""The Ringfence flow record: one aggregated flow as Calico's flow logs describe it.

Every format parser (Calico flow-log JSON, Goldmane, Hubble) produces :class:`Flow`; the engine
evaluates it and the store writes it. Endpoints keep exactly the facts the log had: a ``None`` IP or
name means the log aggregated it away, which the engine must treat as unknown, not as absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, TypeAlias

LabelPairs: TypeAlias = tuple[tuple[str, str], ...]
"""Labels as sorted ``(key, value)`` pairs: hashable, so endpoints can key caches."""

NO_LABELS: Final[LabelPairs] = ()


def label_pairs(labels: Mapping[str, str] | None) -> LabelPairs:
    """Sorted, hashable pairs of a label map."""
    if not labels:
        return NO_LABELS
    return tuple(sorted(labels.items()))


def parse_label_list(items: list[str] | tuple[str, ...]) -> LabelPairs:
    """Labels from Calico's ``["k=v", ...]`` form (a value may itself hold ``=``)."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        pairs[key] = value if sep else ""
    return label_pairs(pairs)


class EndpointType(StrEnum):
    WORKLOAD = "wep"  # a pod
    HOST = "hep"  # a host endpoint
    NETWORK_SET = "ns"  # a (Global)NetworkSet, name_aggr carries its name
    NETWORK = "net"  # anything else; name_aggr is "pub" or "pvt"


class Reporter(StrEnum):
    SOURCE = "src"
    DESTINATION = "dst"
    FORWARD = "fwd"


class FlowAction(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One side of a flow. ``namespace`` is None for ``-``; ``name``/``ip``/``port`` None when aggregated."""

    type: EndpointType
    name_aggr: str
    namespace: str | None = None
    name: str | None = None
    labels: LabelPairs = NO_LABELS
    ip: str | None = None
    port: int | None = None
    service_account: str | None = None

    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True, slots=True)
class PolicyHit:
    """One entry of a flow's policy trace, whichever string form it was read from.

    ``kind`` is the Goldmane short kind (``np``, ``gnp``, ``snp``, ``sgnp``, ``sknp``, ``knp``,
    ``kcnp``, ``pro``); ``name`` is the policy name without namespace as written in the hit (for
    Enterprise strings the ``tier.`` prefix is kept, e.g. ``platform.twilio-integration``);
    ``rule_index`` is -1 for the end-of-tier action and None when the string had none (older logs).
    """

    index: int
    tier: str
    kind: str
    name: str
    action: str  # allow | deny | pass
    rule_index: int | None
    namespace: str | None = None

    @property
    def staged(self) -> bool:
        return self.kind in ("snp", "sgnp", "sknp")


@dataclass(frozen=True, slots=True)
class Flow:
    """One aggregated flow record (one reporter, one action, one time window)."""

    start_time: int  # unix seconds
    end_time: int
    source: Endpoint
    dest: Endpoint
    proto: str  # "tcp", "udp", "icmp", ... or a number as text, lower case as in flow logs
    reporter: Reporter
    action: FlowAction
    dest_domains: tuple[str, ...] = ()
    dest_service_namespace: str | None = None
    dest_service_name: str | None = None
    dest_service_port: str | None = None
    dest_service_port_num: int | None = None
    host: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0
    num_flows: int = 1
    num_flows_started: int = 0
    num_flows_completed: int = 0
    http_requests_allowed_in: int = 0
    http_requests_denied_in: int = 0
    enforced_policies: tuple[PolicyHit, ...] = ()
    pending_policies: tuple[PolicyHit, ...] = ()
