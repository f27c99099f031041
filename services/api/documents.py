"""Resources as the API shows and stores them: documents, YAML, scopes for RBAC, staged/enforced twins."""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from ringfence.manifests import dump_manifests, resource_to_dict
from ringfence.model import (
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    KubernetesNetworkPolicy,
    NetworkPolicy,
    NetworkSet,
    Resource,
    StagedAction,
    StagedGlobalNetworkPolicy,
    StagedKubernetesNetworkPolicy,
    StagedNetworkPolicy,
    Tier,
)
from services.api.permissions import Scope

POLICY_TYPES: Final = (
    NetworkPolicy,
    GlobalNetworkPolicy,
    StagedNetworkPolicy,
    StagedGlobalNetworkPolicy,
    KubernetesNetworkPolicy,
    StagedKubernetesNetworkPolicy,
)
POLICY_KINDS: Final = frozenset(cls.kind for cls in POLICY_TYPES)
NETWORK_SET_KINDS: Final = frozenset({NetworkSet.kind, GlobalNetworkSet.kind})

StagedPolicy = StagedNetworkPolicy | StagedGlobalNetworkPolicy | StagedKubernetesNetworkPolicy
EnforcedPolicy = NetworkPolicy | GlobalNetworkPolicy | KubernetesNetworkPolicy


def scope_of(resource: Resource) -> Scope:
    """Where ``resource`` lives for RBAC: its tier (policies, tiers) and namespace (namespaced kinds)."""
    namespace = resource.metadata.namespace if resource.namespaced else None
    if isinstance(resource, Tier):
        return Scope(tier=resource.name, namespace=None)
    if isinstance(resource, POLICY_TYPES):
        return Scope(tier=resource.tier, namespace=namespace)
    return Scope(tier=None, namespace=namespace)


def storable(resource: Resource) -> Resource:
    """``resource`` without the server-managed metadata (resource version, uid, creation time)."""
    metadata = dataclasses.replace(resource.metadata, resource_version=None, uid=None, creation_timestamp=None)
    return dataclasses.replace(resource, metadata=metadata)


def with_version(resource: Resource, resource_version: int | None) -> Resource:
    """``resource`` carrying ``resource_version`` in its metadata (as clients read it back)."""
    version = None if resource_version is None else str(resource_version)
    return dataclasses.replace(resource, metadata=dataclasses.replace(resource.metadata, resource_version=version))


def document_of(resource: Resource) -> dict[str, Any]:
    """The calicoctl-style document of ``resource`` as stored (no server-managed metadata)."""
    return resource_to_dict(storable(resource))


def yaml_of(resource: Resource) -> str:
    """The YAML of ``resource``, as ``calicoctl get -o yaml`` would print it."""
    return dump_manifests([resource])


def parse_version(text: str | None, *, what: str = "resourceVersion") -> int | None:
    """A resource version as the API receives it (a decimal string); ``ValueError`` when malformed."""
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{what} {text!r} is not a resource version (a decimal number)")
    return int(text)


def enforced_twin(staged: StagedPolicy) -> EnforcedPolicy:
    """The enforced policy a staged one stands for (same metadata and spec, the enforced kind)."""
    metadata = staged.metadata
    if isinstance(staged, StagedNetworkPolicy):
        return NetworkPolicy(metadata=metadata, spec=staged.spec)
    if isinstance(staged, StagedGlobalNetworkPolicy):
        return GlobalNetworkPolicy(metadata=metadata, spec=staged.spec)
    return KubernetesNetworkPolicy(metadata=metadata, spec=staged.spec)


def staged_twin(enforced: EnforcedPolicy, action: StagedAction = StagedAction.SET) -> StagedPolicy:
    """A staged copy of an enforced policy (to edit it without enforcing the edit)."""
    metadata = enforced.metadata
    if isinstance(enforced, NetworkPolicy):
        return StagedNetworkPolicy(metadata=metadata, spec=enforced.spec, staged_action=action)
    if isinstance(enforced, GlobalNetworkPolicy):
        return StagedGlobalNetworkPolicy(metadata=metadata, spec=enforced.spec, staged_action=action)
    return StagedKubernetesNetworkPolicy(metadata=metadata, spec=enforced.spec, staged_action=action)


STAGED_KINDS: Final = frozenset(
    {StagedNetworkPolicy.kind, StagedGlobalNetworkPolicy.kind, StagedKubernetesNetworkPolicy.kind}
)
ENFORCED_KIND_OF_STAGED: Final = {
    StagedNetworkPolicy.kind: NetworkPolicy.kind,
    StagedGlobalNetworkPolicy.kind: GlobalNetworkPolicy.kind,
    StagedKubernetesNetworkPolicy.kind: KubernetesNetworkPolicy.kind,
}
STAGED_KIND_OF_ENFORCED: Final = {enforced: staged for staged, enforced in ENFORCED_KIND_OF_STAGED.items()}
