"""SQL for ``resources`` and ``resource_versions``: the stored Calico resources and their history.

A resource is stored as its calicoctl-style document (``spec`` column, without
``metadata.resourceVersion``, which lives in its own column). Versions come from one cluster-wide
sequence, as Kubernetes' do, so they only ever grow, even across delete and re-create: a client holding
an old version can never overwrite a newer object by accident. Every change, deletions included, adds a
row to ``resource_versions`` (a deletion keeps the last document).

:func:`apply_changes` applies a batch atomically: it takes a transaction-scoped advisory lock per key
(in key order, so concurrent batches cannot deadlock), checks every expected version, and raises
:class:`ResourceConflictError` before writing anything if one is stale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg

from ringfence.model import ResourceKey

Document = dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredResource:
    """A resource as stored: its identity, current version and document."""

    kind: str
    namespace: str | None
    name: str
    resource_version: int
    document: Document
    updated_at: datetime

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(self.kind, self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class ResourceVersion:
    """One entry of a resource's history: ``change`` is create, update or delete.

    For a deletion ``document`` is the last document the resource had.
    """

    key: ResourceKey
    resource_version: int
    change: str
    document: Document
    changed_at: datetime
    changed_by: str


@dataclass(frozen=True, slots=True)
class ResourceChange:
    """Create or replace (``document`` given) or delete (``document`` None) the resource at ``key``.

    ``expected_version``, when given, must equal the stored version.
    """

    key: ResourceKey
    document: Document | None
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class AppliedChange:
    """What a change did: the resource before and after (None when absent); ``changed`` False for a no-op."""

    key: ResourceKey
    before: StoredResource | None
    after: StoredResource | None
    changed: bool = True


@dataclass(frozen=True, slots=True)
class Conflict:
    """A change refused because the stored version differs from the one it was based on."""

    key: ResourceKey
    expected_version: int | None
    actual_version: int | None

    @property
    def message(self) -> str:
        if self.actual_version is None:
            return f"{self.key} does not exist (the change was based on version {self.expected_version})"
        return (
            f"{self.key} is at version {self.actual_version}, the change was based on version "
            f"{self.expected_version}: read it again and reapply"
        )


class ResourceConflictError(Exception):
    """Some changes of a batch were based on stale versions; nothing of the batch was applied."""

    def __init__(self, conflicts: Sequence[Conflict]) -> None:
        super().__init__("; ".join(conflict.message for conflict in conflicts))
        self.conflicts = tuple(conflicts)


class ResourceNotFoundError(LookupError):
    """A deletion named a resource that does not exist; nothing of the batch was applied."""

    def __init__(self, key: ResourceKey) -> None:
        super().__init__(f"{key} does not exist")
        self.key = key


CALICO_POLICY_KINDS: Final = (
    "NetworkPolicy",
    "GlobalNetworkPolicy",
    "StagedNetworkPolicy",
    "StagedGlobalNetworkPolicy",
)


# --- reads -------------------------------------------------------------------------------------

LIST_RESOURCES: Final = """
SELECT kind, namespace, name, resource_version, spec, updated_at
FROM resources
WHERE ($1::text[] IS NULL OR kind = ANY($1::text[]))
  AND ($2::text IS NULL OR namespace = $2)
ORDER BY kind, namespace, name
"""


async def list_resources(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    kinds: Sequence[str] | None = None,
    namespace: str | None = None,
) -> list[StoredResource]:
    """Stored resources of the given kinds (all when None) in ``namespace`` ("" for global ones, None for any)."""
    rows = await conn.fetch(LIST_RESOURCES, None if kinds is None else list(kinds), namespace)
    return [_stored(row) for row in rows]


GET_RESOURCE: Final = """
SELECT kind, namespace, name, resource_version, spec, updated_at
FROM resources WHERE kind = $1 AND namespace = $2 AND name = $3
"""


async def get_resource(conn: asyncpg.Connection | asyncpg.Pool, key: ResourceKey) -> StoredResource | None:
    """The resource stored at ``key``, if any."""
    row = await conn.fetchrow(GET_RESOURCE, key.kind, key.namespace or "", key.name)
    return None if row is None else _stored(row)


# A Calico policy is keyed by its tier-qualified name; users may still name it as they wrote it, or
# by the plain name its tier qualifies.
FIND_BY_NAME: Final = """
SELECT kind, namespace, name, resource_version, spec, updated_at
FROM resources
WHERE kind = $1 AND namespace = $2
  AND (name = $3 OR spec -> 'metadata' ->> 'name' = $3
       OR (kind = ANY($4::text[]) AND name = coalesce(spec -> 'spec' ->> 'tier', 'default') || '.' || $3))
ORDER BY name
"""


async def find_by_name(
    conn: asyncpg.Connection | asyncpg.Pool, kind: str, namespace: str | None, name: str
) -> list[StoredResource]:
    """Resources of ``kind`` in ``namespace`` named ``name``: key name, written name, or tier-qualified."""
    rows = await conn.fetch(FIND_BY_NAME, kind, namespace or "", name, list(CALICO_POLICY_KINDS))
    return [_stored(row) for row in rows]


HISTORY: Final = """
SELECT kind, namespace, name, resource_version, change, spec, changed_at, changed_by
FROM resource_versions
WHERE kind = $1 AND namespace = $2 AND name = $3
ORDER BY resource_version DESC
LIMIT $4
"""


async def history(
    conn: asyncpg.Connection | asyncpg.Pool, key: ResourceKey, *, limit: int = 100
) -> list[ResourceVersion]:
    """The versions of ``key``, newest first (the deleting version included)."""
    rows = await conn.fetch(HISTORY, key.kind, key.namespace or "", key.name, limit)
    return [_version(row) for row in rows]


GET_VERSION: Final = """
SELECT kind, namespace, name, resource_version, change, spec, changed_at, changed_by
FROM resource_versions
WHERE kind = $1 AND namespace = $2 AND name = $3 AND resource_version = $4
"""


async def get_version(
    conn: asyncpg.Connection | asyncpg.Pool, key: ResourceKey, resource_version: int
) -> ResourceVersion | None:
    """One version of ``key`` from the history, if it exists."""
    row = await conn.fetchrow(GET_VERSION, key.kind, key.namespace or "", key.name, resource_version)
    return None if row is None else _version(row)


# A policy document without spec.tier is in the default tier.
TIER_POLICIES: Final = """
SELECT kind, namespace, name FROM resources
WHERE kind = ANY($1::text[]) AND coalesce(spec -> 'spec' ->> 'tier', 'default') = $2
ORDER BY kind, namespace, name
"""


async def tier_policies(conn: asyncpg.Connection | asyncpg.Pool, tier: str) -> list[ResourceKey]:
    """The keys of the Calico policies (staged or not) in ``tier``."""
    rows = await conn.fetch(TIER_POLICIES, list(CALICO_POLICY_KINDS), tier)
    return [ResourceKey(row["kind"], row["namespace"] or None, row["name"]) for row in rows]


# Every write adds a history row with a fresh id: the newest id moves whenever any resource changes.
GENERATION: Final = "SELECT coalesce(max(id), 0) FROM resource_versions"


async def generation(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    """The newest history id: it grows with every committed change (see :func:`change_marker`)."""
    value: int = await conn.fetchval(GENERATION)
    return value


# The newest id alone can miss a change: ids are taken at insert time but become visible at commit,
# so a slow transaction can commit a row below an id already seen. Counting the rows near the top
# catches such late commits (within the last MARKER_WINDOW ids).
MARKER_WINDOW: Final = 1024
CHANGE_MARKER: Final = """
WITH top AS (SELECT coalesce(max(id), 0) AS id FROM resource_versions)
SELECT top.id AS top, (SELECT count(*) FROM resource_versions WHERE id > top.id - $1) AS recent FROM top
"""


async def change_marker(conn: asyncpg.Connection | asyncpg.Pool) -> tuple[int, int]:
    """A value that changes whenever a resource change commits (for caches of the whole resource set)."""
    row = await conn.fetchrow(CHANGE_MARKER, MARKER_WINDOW)
    assert row is not None
    return int(row["top"]), int(row["recent"])


# --- writes ------------------------------------------------------------------------------------

LOCK_KEY: Final = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"

SELECT_CURRENT: Final = """
SELECT r.kind, r.namespace, r.name, r.resource_version, r.spec, r.updated_at
FROM resources AS r
JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(kind, namespace, name)
  ON r.kind = k.kind AND r.namespace = k.namespace AND r.name = k.name
"""

UPSERT_RESOURCE: Final = """
INSERT INTO resources (kind, namespace, name, resource_version, spec)
VALUES ($1, $2, $3, nextval('resource_version_seq'), $4::jsonb)
ON CONFLICT (kind, namespace, name)
DO UPDATE SET resource_version = EXCLUDED.resource_version, spec = EXCLUDED.spec, updated_at = now()
RETURNING kind, namespace, name, resource_version, spec, updated_at
"""

DELETE_RESOURCE: Final = """
DELETE FROM resources WHERE kind = $1 AND namespace = $2 AND name = $3
RETURNING nextval('resource_version_seq') AS resource_version
"""

INSERT_VERSION: Final = """
INSERT INTO resource_versions (kind, namespace, name, resource_version, change, spec, changed_by)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)
"""


async def apply_changes(
    conn: asyncpg.Connection, changes: Sequence[ResourceChange], *, actor: str
) -> list[AppliedChange]:
    """Apply every change or none, in one transaction (a savepoint inside the caller's transaction).

    Raises :class:`ResourceConflictError` when an expected version is stale and
    :class:`ResourceNotFoundError` when a deletion names nothing; nothing is written then. A change
    whose document equals the stored one writes nothing and keeps the version. Results follow the
    order of ``changes``.
    """
    keys = [change.key for change in changes]
    if len(set(keys)) != len(keys):
        duplicates = sorted({str(key) for key in keys if keys.count(key) > 1})
        msg = f"the batch changes the same resource more than once: {', '.join(duplicates)}"
        raise ValueError(msg)
    async with conn.transaction():
        await conn.executemany(LOCK_KEY, [(_lock_name(key),) for key in sorted(keys)])
        columns = ([k.kind for k in keys], [k.namespace or "" for k in keys], [k.name for k in keys])
        current = {stored.key: stored for stored in map(_stored, await conn.fetch(SELECT_CURRENT, *columns))}
        _check(changes, current)
        applied: list[AppliedChange] = []
        for change in changes:
            before = current.get(change.key)
            if change.document is not None and before is not None and before.document == change.document:
                applied.append(AppliedChange(change.key, before, before, changed=False))
                continue
            after = await _write(conn, change, before, actor)
            applied.append(AppliedChange(change.key, before, after))
        return applied


def _check(changes: Sequence[ResourceChange], current: dict[ResourceKey, StoredResource]) -> None:
    conflicts: list[Conflict] = []
    for change in changes:
        stored = current.get(change.key)
        actual = stored.resource_version if stored else None
        if change.expected_version is not None and change.expected_version != actual:
            conflicts.append(Conflict(change.key, change.expected_version, actual))
    if conflicts:
        raise ResourceConflictError(conflicts)
    for change in changes:
        if change.document is None and change.key not in current:
            raise ResourceNotFoundError(change.key)


async def _write(
    conn: asyncpg.Connection, change: ResourceChange, before: StoredResource | None, actor: str
) -> StoredResource | None:
    key = change.key
    namespace = key.namespace or ""
    if change.document is None:
        assert before is not None
        version = await conn.fetchval(DELETE_RESOURCE, key.kind, namespace, key.name)
        await conn.execute(INSERT_VERSION, key.kind, namespace, key.name, version, "delete", before.document, actor)
        return None
    row = await conn.fetchrow(UPSERT_RESOURCE, key.kind, namespace, key.name, change.document)
    assert row is not None
    after = _stored(row)
    change_kind = "create" if before is None else "update"
    await conn.execute(
        INSERT_VERSION, key.kind, namespace, key.name, after.resource_version, change_kind, change.document, actor
    )
    return after


def _lock_name(key: ResourceKey) -> str:
    return f"ringfence.resource/{key.kind}/{key.namespace or ''}/{key.name}"


def _stored(row: asyncpg.Record) -> StoredResource:
    return StoredResource(
        kind=row["kind"],
        namespace=row["namespace"] or None,
        name=row["name"],
        resource_version=int(row["resource_version"]),
        document=row["spec"],
        updated_at=row["updated_at"],
    )


def _version(row: asyncpg.Record) -> ResourceVersion:
    return ResourceVersion(
        key=ResourceKey(row["kind"], row["namespace"] or None, row["name"]),
        resource_version=int(row["resource_version"]),
        change=row["change"],
        document=row["spec"],
        changed_at=row["changed_at"],
        changed_by=row["changed_by"],
    )
