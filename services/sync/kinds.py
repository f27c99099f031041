"""The cluster resources the sync reads, and how each maps to a Ringfence resource kind.

Calico resources come either through the Calico API server (``projectcalico.org/v3``, the only way
Calico supports writing them) or, read-only, straight from its CRDs (``crd.projectcalico.org/v1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

CALICO_API_SERVER: Final = "projectcalico.org/v3"
CALICO_CRDS: Final = "crd.projectcalico.org/v1"


@dataclass(frozen=True, slots=True)
class ClusterKind:
    """One cluster resource type: where it lives in the API and what Ringfence makes of it.

    ``ringfence_kind`` is None for pods and services (inventory only, not resources). ``writable``
    kinds are written back in read-write mode; namespaces are only ever read.
    """

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    ringfence_kind: str | None
    writable: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


NAMESPACES: Final = ClusterKind(
    "", "v1", "namespaces", "Namespace", namespaced=False, ringfence_kind="Namespace", writable=False
)
PODS: Final = ClusterKind("", "v1", "pods", "Pod", namespaced=True, ringfence_kind=None, writable=False)
SERVICES: Final = ClusterKind("", "v1", "services", "Service", namespaced=True, ringfence_kind=None, writable=False)
KUBERNETES_NETWORK_POLICIES: Final = ClusterKind(
    "networking.k8s.io",
    "v1",
    "networkpolicies",
    "NetworkPolicy",
    namespaced=True,
    ringfence_kind="KubernetesNetworkPolicy",
    writable=True,
)
KUBERNETES_KINDS: Final = (NAMESPACES, PODS, SERVICES, KUBERNETES_NETWORK_POLICIES)

# Plural, kind, namespaced; in dependency order (tiers before the policies that name them).
_CALICO: Final = (
    ("tiers", "Tier", False),
    ("globalnetworksets", "GlobalNetworkSet", False),
    ("networksets", "NetworkSet", True),
    ("globalnetworkpolicies", "GlobalNetworkPolicy", False),
    ("networkpolicies", "NetworkPolicy", True),
    ("stagedglobalnetworkpolicies", "StagedGlobalNetworkPolicy", False),
    ("stagednetworkpolicies", "StagedNetworkPolicy", True),
    ("stagedkubernetesnetworkpolicies", "StagedKubernetesNetworkPolicy", True),
)


def calico_kinds(api_version: str) -> tuple[ClusterKind, ...]:
    """The Calico kinds under ``api_version``; writable only through the Calico API server."""
    group, version = api_version.split("/")
    writable = api_version == CALICO_API_SERVER
    return tuple(
        ClusterKind(group, version, plural, kind, namespaced=namespaced, ringfence_kind=kind, writable=writable)
        for plural, kind, namespaced in _CALICO
    )


# Ringfence kinds in the order they are created (and, reversed, deleted): a tier exists before its
# policies, a namespace before what lives in it.
CREATION_ORDER: Final = (
    "Namespace",
    "Tier",
    "GlobalNetworkSet",
    "NetworkSet",
    "GlobalNetworkPolicy",
    "NetworkPolicy",
    "KubernetesNetworkPolicy",
    "StagedGlobalNetworkPolicy",
    "StagedNetworkPolicy",
    "StagedKubernetesNetworkPolicy",
)


def creation_rank(ringfence_kind: str) -> int:
    """Position of ``ringfence_kind`` in :data:`CREATION_ORDER` (unknown kinds last)."""
    try:
        return CREATION_ORDER.index(ringfence_kind)
    except ValueError:
        return len(CREATION_ORDER)
