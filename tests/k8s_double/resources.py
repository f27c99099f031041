"""The resource types the double serves, as a real API server lists them in discovery."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One REST resource: ``/api/v1/pods`` or ``/apis/<group>/<version>/[namespaces/<ns>/]<plural>``."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def builtin(self) -> bool:
        """Built-in types omit apiVersion and kind in list items; custom resources keep them."""
        return self.group in {"", "networking.k8s.io"}


CORE: Final = (
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False),
    ResourceType("", "v1", "pods", "Pod", namespaced=True),
    ResourceType("", "v1", "services", "Service", namespaced=True),
    ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", namespaced=True),
)

_CALICO_KINDS: Final = (
    ("tiers", "Tier", False),
    ("networkpolicies", "NetworkPolicy", True),
    ("globalnetworkpolicies", "GlobalNetworkPolicy", False),
    ("stagednetworkpolicies", "StagedNetworkPolicy", True),
    ("stagedglobalnetworkpolicies", "StagedGlobalNetworkPolicy", False),
    ("stagedkubernetesnetworkpolicies", "StagedKubernetesNetworkPolicy", True),
    ("networksets", "NetworkSet", True),
    ("globalnetworksets", "GlobalNetworkSet", False),
)

CALICO_API_SERVER: Final = "projectcalico.org/v3"
CALICO_CRDS: Final = "crd.projectcalico.org/v1"


def calico(api_version: str) -> tuple[ResourceType, ...]:
    """The Calico resources under ``api_version`` (the API server's v3 group or the CRD group)."""
    group, version = api_version.split("/")
    return tuple(ResourceType(group, version, plural, kind, namespaced) for plural, kind, namespaced in _CALICO_KINDS)
