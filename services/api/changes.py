"""Changing resources on behalf of a caller: RBAC, validation, versioned atomic writes and the audit log.

Every function here runs in one transaction: the resources, their history and the audit entries
commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from ringfence.manifests import ManifestError, resource_from_dict
from ringfence.model import DEFAULT_TIER, Resource, ResourceKey, StagedAction, Tier, resource_key
from services.api.documents import (
    POLICY_TYPES,
    StagedPolicy,
    document_of,
    enforced_twin,
    scope_of,
    with_version,
)
from services.api.permissions import Principal, Verb
from services.api.schema.errors import (
    BadUserInputError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
)
from services.api.snapshot import Entry
from services.common.db import audit
from services.common.db import resources as store
from services.common.db.resources import AppliedChange, ResourceChange, StoredResource


@dataclass(frozen=True, slots=True)
class Change:
    """One requested change: the new resource (None to delete) at ``key``, based on ``expected_version``."""

    key: ResourceKey
    resource: Resource | None
    expected_version: int | None = None
    action: str | None = None  # the audit action; create/update/delete when None


def require(principal: Principal, verb: Verb, resource: Resource) -> None:
    """Refuse with FORBIDDEN unless ``principal`` may ``verb`` ``resource``."""
    scope = scope_of(resource)
    if not principal.can(verb, scope):
        raise ForbiddenError(
            f"{principal.role} token {principal.name!r} may not {verb} {resource_key(resource)} ({scope})",
            verb=verb.value,
            tier=scope.tier,
            namespace=scope.namespace,
        )


async def apply(
    conn: asyncpg.Connection,
    principal: Principal,
    changes: Sequence[Change],
    *,
    dry_run: bool = False,
) -> list[Entry | None]:
    """Apply ``changes`` atomically; return each resource after its change (None when deleted).

    Checks write permission on every new resource and on every resource it replaces, that the tiers
    policies name exist and that no tier still holding policies is deleted. A stale version raises
    ``CONFLICT``; nothing is applied then. A dry run checks everything and rolls back.
    """
    transaction = conn.transaction()
    await transaction.start()
    try:
        applied = await _apply(conn, principal, changes)
        results = [_entry(item, change) for item, change in zip(applied, changes, strict=True)]
    except BaseException as error:
        await transaction.rollback()
        _raise_typed(error)
        raise
    if dry_run:
        await transaction.rollback()
    else:
        await transaction.commit()
    return results


def _raise_typed(error: BaseException) -> None:
    """Raise the API error a store error stands for (nothing for other errors)."""
    if isinstance(error, store.ResourceConflictError):
        raise ConflictError.from_conflicts(error.conflicts) from None
    if isinstance(error, store.ResourceNotFoundError):
        raise NotFoundError(
            str(error), kind=error.key.kind, namespace=error.key.namespace, name=error.key.name
        ) from None


async def _apply(conn: asyncpg.Connection, principal: Principal, changes: Sequence[Change]) -> list[AppliedChange]:
    current = {key: await store.get_resource(conn, key) for key in (change.key for change in changes)}
    for change in changes:
        if change.resource is not None:
            require(principal, Verb.WRITE, change.resource)
        stored = current[change.key]
        if stored is not None:
            require(principal, Verb.WRITE, _model(stored))
    await _check_tiers(conn, changes)
    try:
        applied = await store.apply_changes(
            conn,
            [
                ResourceChange(
                    change.key,
                    None if change.resource is None else document_of(change.resource),
                    change.expected_version,
                )
                for change in changes
            ],
            actor=principal.name,
        )
    except ValueError as error:
        raise BadUserInputError(str(error)) from None
    for item, change in zip(applied, changes, strict=True):
        if item.changed:
            await audit.record(
                conn,
                actor=principal.name,
                action=change.action or _change_kind(item),
                kind=item.key.kind,
                namespace=item.key.namespace,
                name=item.key.name,
                before=_audited(item.before),
                after=_audited(item.after),
            )
    return applied


async def _check_tiers(conn: asyncpg.Connection, changes: Sequence[Change]) -> None:
    created_tiers = {c.key.name for c in changes if c.key.kind == Tier.kind and c.resource is not None}
    deleted_tiers = {c.key.name for c in changes if c.key.kind == Tier.kind and c.resource is None}
    if DEFAULT_TIER in deleted_tiers:
        raise BadUserInputError("the default tier cannot be deleted", kind=Tier.kind, name=DEFAULT_TIER)
    for change in changes:
        resource = change.resource
        if not isinstance(resource, POLICY_TYPES) or resource.tier == DEFAULT_TIER:
            continue
        if resource.tier in created_tiers:
            continue
        stored_tier = await store.get_resource(conn, ResourceKey(Tier.kind, None, resource.tier))
        if stored_tier is None or resource.tier in deleted_tiers:
            raise BadUserInputError(
                f"{change.key} names tier {resource.tier!r}, which does not exist: create the tier first",
                kind=change.key.kind,
                namespace=change.key.namespace,
                name=change.key.name,
                field="spec.tier",
            )
    removed_policies = {c.key for c in changes if c.resource is None}
    for tier in deleted_tiers:
        users = [key for key in await store.tier_policies(conn, tier) if key not in removed_policies]
        if users:
            raise BadUserInputError(
                f"tier {tier!r} still holds {len(users)} policies (first: {users[0]}): delete or move them first",
                kind=Tier.kind,
                name=tier,
            )


def _change_kind(item: AppliedChange) -> str:
    if item.before is None:
        return "create"
    return "delete" if item.after is None else "update"


def _audited(stored: StoredResource | None) -> dict[str, Any] | None:
    if stored is None:
        return None
    document = dict(stored.document)
    document["metadata"] = {**document.get("metadata", {}), "resourceVersion": str(stored.resource_version)}
    return document


def _model(stored: StoredResource) -> Resource:
    try:
        return resource_from_dict(stored.document)
    except ManifestError as error:  # pragma: no cover - stored documents were validated on the way in
        raise BadUserInputError(f"stored {stored.key} no longer validates: {error}") from None


def entry_of(stored: StoredResource) -> Entry:
    """The snapshot entry of a stored resource (its model carrying the resource version)."""
    return Entry(stored, with_version(_model(stored), stored.resource_version))


def _entry(item: AppliedChange, change: Change) -> Entry | None:
    if item.after is None:
        return None
    resource = change.resource if change.resource is not None else _model(item.after)
    return Entry(item.after, with_version(resource, item.after.resource_version))


# --- promotion ---------------------------------------------------------------------------------

PROMOTABLE: Final = frozenset({StagedAction.SET, StagedAction.LEARN, StagedAction.DELETE})


def promotion(staged: StagedPolicy, staged_version: int) -> list[Change]:
    """The changes that enforce ``staged`` as the lab's Enforce does.

    ``Set`` (and ``Learn``, a recommendation still learning) creates or replaces the enforced twin;
    ``Delete`` deletes it; either way the staged policy is removed. ``Ignore`` cannot be promoted.
    """
    if staged.staged_action not in PROMOTABLE:
        raise BadUserInputError(
            f"a staged policy with stagedAction {staged.staged_action} cannot be promoted (Set, Learn or Delete can)",
            field="spec.stagedAction",
        )
    twin = enforced_twin(staged)
    twin_key = resource_key(twin)
    staged_change = Change(resource_key(staged), None, staged_version, action="promote")
    if staged.staged_action is StagedAction.DELETE:
        return [Change(twin_key, None, action="promote"), staged_change]
    return [Change(twin_key, twin, action="promote"), staged_change]


async def stored_entry(conn: asyncpg.Connection | asyncpg.Pool, kind: str, name: str, namespace: str | None) -> Entry:
    """The stored resource ``kind``/``namespace``/``name`` (the written or tier-qualified name)."""
    matches = await store.find_by_name(conn, kind, namespace, name)
    where = f"{namespace}/" if namespace else ""
    if not matches:
        raise NotFoundError(f"{kind} {where}{name} does not exist", kind=kind, namespace=namespace, name=name)
    if len(matches) > 1:
        names = ", ".join(match.name for match in matches)
        raise BadUserInputError(f"{kind} {where}{name} is ambiguous ({names}): use the tier-qualified name")
    return entry_of(matches[0])
