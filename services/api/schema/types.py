"""GraphQL object types for resources: tiers, policies and their rules and versions, network sets, the caller."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Protocol

import strawberry
import yaml as pyyaml
from strawberry.scalars import JSON

from ringfence import model
from ringfence.manifests import ManifestError, resource_from_dict, resource_to_dict
from ringfence.model import (
    DEFAULT_TIER_ORDER,
    KNP_ORDER,
    KubernetesNetworkPolicy,
    LabelSelector,
    StagedKubernetesNetworkPolicy,
)
from services.api.documents import POLICY_TYPES, yaml_of
from services.api.permissions import Principal, Scope, Verb
from services.api.schema.board import board_counts
from services.api.schema.context import Info
from services.api.schema.flow_types import BoardPolicy
from services.api.snapshot import Entry
from services.common.db import resources as resource_store
from services.common.db.resources import ResourceVersion


@strawberry.type(description="Any stored resource, as calicoctl shows it.")
class Resource:
    entry: strawberry.Private[Entry]
    kind: str
    name: str
    namespace: str | None
    resource_version: str
    updated_at: datetime

    @strawberry.field(description="The document as YAML, metadata.resourceVersion included.")
    def yaml(self) -> str:
        return yaml_of(self.entry.resource)

    @strawberry.field(description="The document as JSON, metadata.resourceVersion included.")
    def document(self) -> JSON:
        return JSON(resource_to_dict(self.entry.resource))

    @strawberry.field(description="The resource's labels.")
    def labels(self) -> JSON:
        return JSON(dict(self.entry.resource.metadata.labels))

    @classmethod
    def from_entry(cls, entry: Entry) -> Resource:
        stored = entry.stored
        return cls(
            entry=entry,
            kind=stored.kind,
            name=stored.name,
            namespace=stored.namespace,
            resource_version=str(stored.resource_version),
            updated_at=stored.updated_at,
        )


@strawberry.type(description="One version of a resource from its history.")
class ResourceRevision:
    resource_version: str
    change: str = strawberry.field(description="create, update or delete")
    changed_at: datetime
    changed_by: str
    document: JSON = strawberry.field(description="The document of this version (for a delete, the last one).")

    @strawberry.field(description="The document of this version as YAML.")
    def yaml(self) -> str:
        try:
            return yaml_of(resource_from_dict(dict(self.document)))  # type: ignore[call-overload]
        except ManifestError:
            return str(pyyaml.safe_dump(self.document, sort_keys=False))

    @classmethod
    def from_version(cls, version: ResourceVersion) -> ResourceRevision:
        return cls(
            resource_version=str(version.resource_version),
            change=version.change,
            changed_at=version.changed_at,
            changed_by=version.changed_by,
            document=JSON(version.document),
        )


async def revisions_of(info: Info, entry: Entry, first: int) -> list[ResourceRevision]:
    versions = await resource_store.history(info.context.services.pool, entry.stored.key, limit=max(1, min(first, 500)))
    return [ResourceRevision.from_version(version) for version in versions]


@strawberry.type(description="One ingress or egress rule of a policy.")
class PolicyRule:
    direction: str = strawberry.field(description="ingress or egress")
    index: int
    action: str = strawberry.field(description="Allow, Deny, Pass or Log (Kubernetes rules: Allow)")
    protocol: str | None
    source: JSON = strawberry.field(description="The rule's source (Kubernetes rules: from).")
    destination: JSON = strawberry.field(description="The rule's destination (Kubernetes rules: to and ports).")
    metadata: JSON = strawberry.field(description="The rule's annotations (a recommendation's provenance).")
    document: JSON

    @strawberry.field
    def yaml(self) -> str:
        return str(pyyaml.safe_dump(self.document, sort_keys=False))


def _rules(document: dict[str, Any], *, kubernetes: bool) -> list[PolicyRule]:
    spec = document.get("spec", {})
    rules: list[PolicyRule] = []
    for direction in ("ingress", "egress"):
        for index, rule in enumerate(spec.get(direction) or []):
            if kubernetes:
                peers = rule.get("from" if direction == "ingress" else "to") or []
                ports = rule.get("ports") or []
                source = {"peers": peers} if direction == "ingress" else {}
                destination = {"ports": ports} if direction == "ingress" else {"peers": peers, "ports": ports}
                rules.append(
                    PolicyRule(
                        direction=direction,
                        index=index,
                        action="Allow",
                        protocol=None,
                        source=JSON(source),
                        destination=JSON(destination),
                        metadata=JSON({}),
                        document=JSON(rule),
                    )
                )
                continue
            protocol = rule.get("protocol")
            rules.append(
                PolicyRule(
                    direction=direction,
                    index=index,
                    action=str(rule.get("action", "")),
                    protocol=None if protocol is None else str(protocol),
                    source=JSON(rule.get("source") or {}),
                    destination=JSON(rule.get("destination") or {}),
                    metadata=JSON((rule.get("metadata") or {}).get("annotations") or {}),
                    document=JSON(rule),
                )
            )
    return rules


def label_selector_text(selector: LabelSelector) -> str:
    """A Kubernetes label selector in Calico's selector syntax (``all()`` when empty)."""
    terms = [f"{key} == '{value}'" for key, value in sorted(selector.match_labels.items())]
    for requirement in selector.match_expressions:
        values = ", ".join(f"'{value}'" for value in requirement.values)
        terms.append(
            {
                "In": f"{requirement.key} in {{{values}}}",
                "NotIn": f"{requirement.key} not in {{{values}}}",
                "Exists": f"has({requirement.key})",
                "DoesNotExist": f"!has({requirement.key})",
            }.get(requirement.operator, f"has({requirement.key})")
        )
    return " && ".join(terms) if terms else "all()"


@strawberry.type(description="A policy of any kind: Calico, global, staged or Kubernetes.")
class Policy:
    entry: strawberry.Private[Entry]
    kind: str
    name: str = strawberry.field(description="The stored name (Calico policies: tier-qualified, as in flow logs).")
    namespace: str | None
    tier: str
    order: float | None
    selector: str
    staged: bool
    types: list[str]
    resource_version: str
    staged_action: str | None = strawberry.field(description="Set, Delete, Learn or Ignore (staged policies)")
    namespace_selector: str | None
    service_account_selector: str | None

    @strawberry.field(description="The policy as YAML, metadata.resourceVersion included.")
    def yaml(self) -> str:
        return yaml_of(self.entry.resource)

    @strawberry.field(description="Ingress rules then egress rules.")
    def rules(self) -> list[PolicyRule]:
        resource = self.entry.resource
        kubernetes = isinstance(resource, KubernetesNetworkPolicy | StagedKubernetesNetworkPolicy)
        return _rules(resource_to_dict(resource), kubernetes=kubernetes)

    @strawberry.field(description="The policy's versions, newest first.")
    async def versions(self, info: Info, first: int = 20) -> list[ResourceRevision]:
        return await revisions_of(info, self.entry, first)

    @strawberry.field(description="Flows the policy and each rule allowed, denied and passed in [from, to).")
    async def statistics(
        self,
        info: Info,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
    ) -> BoardPolicy:
        counts = await board_counts(info, from_, to)
        key = (self.kind, self.namespace, self.name)
        return counts.board_policy(key, staged=self.staged, order=self.order)

    @classmethod
    def from_entry(cls, entry: Entry) -> Policy:
        resource = entry.resource
        assert isinstance(resource, POLICY_TYPES)
        staged_action = getattr(resource, "staged_action", None)
        if isinstance(resource, KubernetesNetworkPolicy | StagedKubernetesNetworkPolicy):
            spec_types = resource.spec.policy_types or ("Ingress",)
            return cls(
                entry=entry,
                kind=resource.kind,
                name=entry.stored.name,
                namespace=resource.namespace,
                tier=resource.tier,
                order=KNP_ORDER,
                selector=label_selector_text(resource.spec.pod_selector),
                staged=resource.staged,
                types=[str(item) for item in spec_types],
                resource_version=str(entry.stored.resource_version),
                staged_action=None if staged_action is None else str(staged_action),
                namespace_selector=None,
                service_account_selector=None,
            )
        spec = resource.spec
        return cls(
            entry=entry,
            kind=resource.kind,
            name=entry.stored.name,
            namespace=resource.namespace if resource.namespaced else None,
            tier=resource.tier,
            order=spec.order,
            selector=spec.selector or "all()",
            staged=resource.staged,
            types=[str(item) for item in spec.types],
            resource_version=str(entry.stored.resource_version),
            staged_action=None if staged_action is None else str(staged_action),
            namespace_selector=spec.namespace_selector,
            service_account_selector=spec.service_account_selector or None,
        )


class Ordered(Protocol):
    @property
    def order(self) -> float | None: ...

    @property
    def name(self) -> str: ...


def policy_sort_key(policy: Ordered) -> tuple[bool, float, str]:
    """Calico's order: by ``order``, policies without one last, ties broken by name."""
    return (policy.order is None, policy.order or 0.0, policy.name)


@strawberry.type(description="A tier and its policies in evaluation order.")
class Tier:
    tier: strawberry.Private[model.Tier]
    entry: strawberry.Private[Entry | None]
    name: str
    order: float | None
    default_action: str = strawberry.field(description="What happens to traffic no policy of the tier decides.")
    resource_version: str | None = strawberry.field(description="Null for the implicit default tier.")

    @strawberry.field(description="The tier as YAML.")
    def yaml(self) -> str:
        return yaml_of(self.entry.resource if self.entry else self.tier)

    @strawberry.field(description="The tier's policies in evaluation order.")
    async def policies(self, info: Info, include_staged: bool | None = True) -> list[Policy]:
        snapshot = await info.context.snapshot()
        policies = [
            Policy.from_entry(entry)
            for entry in snapshot
            if isinstance(entry.resource, POLICY_TYPES)
            and entry.resource.tier == self.name
            and (include_staged is not False or not entry.resource.staged)
        ]
        return sorted(policies, key=policy_sort_key)

    @classmethod
    def from_tier(cls, tier: model.Tier, entry: Entry | None) -> Tier:
        return cls(
            tier=tier,
            entry=entry,
            name=tier.name,
            order=tier.order,
            default_action=str(tier.default_action),
            resource_version=None if entry is None else str(entry.stored.resource_version),
        )


def tier_sort_key(tier: Tier) -> tuple[bool, float, str]:
    """Tiers by order, ``default`` at its implicit order when it has none, ties by name."""
    order = tier.order
    if order is None and tier.name == "default":
        order = DEFAULT_TIER_ORDER
    return (order is None, order or 0.0, tier.name)


@strawberry.type(description="A NetworkSet or GlobalNetworkSet.")
class NetworkSet:
    entry: strawberry.Private[Entry]
    kind: str
    name: str
    namespace: str | None
    nets: list[str]
    allowed_egress_domains: list[str]
    resource_version: str

    @strawberry.field
    def labels(self) -> JSON:
        return JSON(dict(self.entry.resource.metadata.labels))

    @strawberry.field
    def yaml(self) -> str:
        return yaml_of(self.entry.resource)

    @classmethod
    def from_entry(cls, entry: Entry) -> NetworkSet:
        resource = entry.resource
        assert isinstance(resource, model.NetworkSet | model.GlobalNetworkSet)
        return cls(
            entry=entry,
            kind=resource.kind,
            name=resource.name,
            namespace=resource.metadata.namespace if resource.namespaced else None,
            nets=list(resource.nets),
            allowed_egress_domains=list(resource.allowed_egress_domains),
            resource_version=str(entry.stored.resource_version),
        )


@strawberry.type(description="One verb the caller may use, on a tier and a namespace ('*' for any).")
class Grant:
    verb: str
    tier: str
    namespace: str


@strawberry.type(description="The caller: its token's name, role and what the role allows.")
class Me:
    principal: strawberry.Private[Principal]
    name: str
    role: str
    tiers: list[str]
    namespaces: list[str]
    grants: list[Grant]

    @strawberry.field(description="Whether the caller may use verb (read, write, preview, promote) there.")
    def can(self, verb: str, tier: str | None = None, namespace: str | None = None) -> bool:
        try:
            parsed = Verb(verb)
        except ValueError:
            return False
        return self.principal.can(parsed, Scope(tier=tier, namespace=namespace))

    @classmethod
    def from_principal(cls, principal: Principal) -> Me:
        return cls(
            principal=principal,
            name=principal.name,
            role=principal.role.value,
            tiers=sorted(principal.tiers),
            namespaces=sorted(principal.namespaces),
            grants=[Grant(verb=g.verb.value, tier=g.tier, namespace=g.namespace) for g in principal.grants()],
        )


@strawberry.type(description="Whether a selector parses; where and why not when it does not.")
class SelectorCheck:
    ok: bool
    error: str | None = None
    position: int | None = strawberry.field(default=None, description="0-based column of the problem")
    canonical: str | None = strawberry.field(default=None, description="The selector in Calico's canonical form")
