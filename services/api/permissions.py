"""Per-tier RBAC: what each built-in role may do, on which tiers and namespaces.

Calico ties policy RBAC to tiers; Ringfence does the same with four roles:

- ``admin``: every verb on everything.
- ``tier-admin``: reads everything; every other verb on whatever lives in its tiers (any namespace,
  global policies included, and the tier resources themselves).
- ``developer``: reads everything; writes, stages, previews and promotes only namespaced resources
  in its namespaces, and for tiered resources (policies) only in its tiers. Namespace-less resources
  (tiers, global policies, global network sets, namespaces) are out of reach.
- ``viewer``: reads only.

A :class:`Scope` says where a resource lives: its tier (None for resources outside tiers, such as
network sets) and its namespace (None for global resources).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Role(StrEnum):
    ADMIN = "admin"
    TIER_ADMIN = "tier-admin"
    DEVELOPER = "developer"
    VIEWER = "viewer"


class Verb(StrEnum):
    READ = "read"
    WRITE = "write"
    PREVIEW = "preview"
    PROMOTE = "promote"


ALL_VERBS: Final = tuple(Verb)


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a resource lives: ``tier`` None outside tiers, ``namespace`` None for global resources."""

    tier: str | None = None
    namespace: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.tier is not None:
            parts.append(f"tier {self.tier!r}")
        parts.append(f"namespace {self.namespace!r}" if self.namespace is not None else "global scope")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: a token's name, role and the tiers and namespaces the role is bound to."""

    name: str
    role: Role
    tiers: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()

    def can(self, verb: Verb, scope: Scope) -> bool:
        """Whether the caller may apply ``verb`` to a resource in ``scope``."""
        if self.role is Role.ADMIN or verb is Verb.READ:
            return True
        if self.role is Role.TIER_ADMIN:
            return scope.tier is not None and scope.tier in self.tiers
        if self.role is Role.DEVELOPER:
            if scope.namespace is None or scope.namespace not in self.namespaces:
                return False
            return scope.tier is None or scope.tier in self.tiers
        return False

    def grants(self) -> list[Grant]:
        """What the role grants, as a list a client can show (``*`` means any)."""
        if self.role is Role.ADMIN:
            return [Grant(verb, "*", "*") for verb in ALL_VERBS]
        read = [Grant(Verb.READ, "*", "*")]
        others = [verb for verb in ALL_VERBS if verb is not Verb.READ]
        if self.role is Role.TIER_ADMIN:
            return read + [Grant(verb, tier, "*") for verb in others for tier in sorted(self.tiers)]
        if self.role is Role.DEVELOPER:
            return read + [
                Grant(verb, tier, namespace)
                for verb in others
                for tier in sorted(self.tiers)
                for namespace in sorted(self.namespaces)
            ]
        return read


@dataclass(frozen=True, slots=True)
class Grant:
    """One verb allowed on a tier and a namespace (``*`` for any)."""

    verb: Verb
    tier: str
    namespace: str


def check_grants(role: Role, tiers: frozenset[str], namespaces: frozenset[str]) -> None:
    """Refuse role bindings that make no sense (raise ``ValueError`` saying why)."""
    if role is Role.TIER_ADMIN and not tiers:
        raise ValueError("a tier-admin token needs at least one --tier")
    if role is Role.TIER_ADMIN and namespaces:
        raise ValueError("a tier-admin token covers whole tiers: --namespace does not apply")
    if role is Role.DEVELOPER and not namespaces:
        raise ValueError("a developer token needs at least one --namespace")
    if role in (Role.ADMIN, Role.VIEWER) and (tiers or namespaces):
        raise ValueError(f"a {role} token applies everywhere: --tier and --namespace do not apply")
