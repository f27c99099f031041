"""What a recommendation covers: one workload of a namespace, or the whole namespace.

A workload is named the way flow records name it, by its aggregate ``name_aggr``
(``backend-6cfbdd589f-*``). The flows of a scope are its allowed flows, each taken from the side that
evaluates it: egress from records the source reported, ingress from records the destination reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ringfence.flows.record import Endpoint, EndpointType, Flow, FlowAction, Reporter
from ringfence.model import DEFAULT_TIER, PolicyType

WORKLOAD_PREFIX: Final = "recommended-"
NAMESPACE_PREFIX: Final = "namespace-isolation-"
_MAX_NAME: Final = 253
# A ReplicaSet's pod-template-hash: 5 to 10 characters of Kubernetes' "safe" alphabet.
_TEMPLATE_HASH: Final = re.compile(r"[bcdfghjklmnpqrstvwxz2456789]{5,10}")
_NOT_DNS: Final = re.compile(r"[^a-z0-9-]+")


class ScopeKind(StrEnum):
    WORKLOAD = "workload"
    NAMESPACE = "namespace"


@dataclass(frozen=True, slots=True)
class Scope:
    """A recommendation scope: ``namespace`` alone, or one ``workload`` (a ``name_aggr``) in it.

    ``tier`` is where the recommended policy goes (``default`` unless the scope names another).
    """

    namespace: str
    workload: str | None = None
    tier: str = DEFAULT_TIER

    @property
    def kind(self) -> ScopeKind:
        return ScopeKind.NAMESPACE if self.workload is None else ScopeKind.WORKLOAD

    def describe(self) -> str:
        """``workload:<ns>/<name_aggr>`` or ``namespace:<ns>``: recorded on the policy."""
        if self.workload is None:
            return f"namespace:{self.namespace}"
        return f"workload:{self.namespace}/{self.workload}"

    def policy_name(self) -> str:
        """The stable, readable name of the scope's policy (``recommended-backend``, ``namespace-isolation-ns``)."""
        if self.workload is None:
            return _dns_name(NAMESPACE_PREFIX + self.namespace)
        return _dns_name(WORKLOAD_PREFIX + workload_base_name(self.workload))

    def includes(self, endpoint: Endpoint) -> bool:
        """Whether ``endpoint`` is (one of) the pods the scope covers."""
        if endpoint.type is not EndpointType.WORKLOAD or endpoint.namespace != self.namespace:
            return False
        return self.workload is None or endpoint.name_aggr == self.workload

    def direction(self, flow: Flow) -> PolicyType | None:
        """The direction in which the scope's policy evaluates ``flow``, or None when it does not.

        Only allowed flows count, each from its evaluating side: egress from a record the scope's pod
        reported as source, ingress from one it reported as destination.
        """
        if flow.action is not FlowAction.ALLOW:
            return None
        if flow.reporter is Reporter.SOURCE and self.includes(flow.source):
            return PolicyType.EGRESS
        if flow.reporter is Reporter.DESTINATION and self.includes(flow.dest):
            return PolicyType.INGRESS
        return None


def workload_base_name(name_aggr: str) -> str:
    """The workload name inside an aggregate: ``backend-6cfbdd589f-*`` -> ``backend``, ``db-*`` -> ``db``."""
    base = name_aggr.rstrip("*").rstrip("-")
    head, sep, tail = base.rpartition("-")
    if sep and head and _TEMPLATE_HASH.fullmatch(tail) and any(ch.isdigit() for ch in tail):
        return head
    return base or name_aggr


def _dns_name(text: str) -> str:
    name = _NOT_DNS.sub("-", text.lower()).strip("-")
    return name[:_MAX_NAME].rstrip("-")
