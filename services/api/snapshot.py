"""A consistent, parsed view of every stored resource, cached per process until something changes.

Resources are few (hundreds to a few thousand) and read by almost every query: loading and parsing
them once per change, rather than once per request, keeps queries cheap. Each request asks the
database where the history stands (two index lookups) and reuses the cached snapshot when it has
not moved.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import asyncpg

from ringfence.engine import PolicyEngine
from ringfence.manifests import ManifestError, resource_from_dict
from ringfence.model import DEFAULT_TIER, DEFAULT_TIER_ORDER, Action, ObjectMeta, Resource, ResourceKey, Tier
from services.api.documents import with_version
from services.common.db import resources as resource_store
from services.common.db.resources import StoredResource

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored resource and its model (carrying its resource version in the metadata)."""

    stored: StoredResource
    resource: Resource


class Snapshot:
    """Every stored resource at one generation, by key, with the policy engine built on demand."""

    def __init__(self, generation: tuple[int, int], entries: Iterable[Entry]) -> None:
        self.generation = generation
        self.entries: dict[ResourceKey, Entry] = {entry.stored.key: entry for entry in entries}

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries.values())

    def get(self, key: ResourceKey) -> Entry | None:
        return self.entries.get(key)

    def of_kinds(self, *kinds: str) -> list[Entry]:
        return [entry for entry in self.entries.values() if entry.stored.kind in kinds]

    def tiers(self) -> list[Tier]:
        """Every tier, the implicit ``default`` one included when it is not stored."""
        tiers = [entry.resource for entry in self.of_kinds(Tier.kind) if isinstance(entry.resource, Tier)]
        if not any(tier.name == DEFAULT_TIER for tier in tiers):
            tiers.append(
                Tier(metadata=ObjectMeta(name=DEFAULT_TIER), order=DEFAULT_TIER_ORDER, default_action=Action.DENY)
            )
        return tiers

    @functools.cached_property
    def engine(self) -> PolicyEngine:
        return PolicyEngine([entry.resource for entry in self.entries.values()])


class SnapshotCache:
    """Hands out the current :class:`Snapshot`, reloading only when the resource history has moved."""

    def __init__(self) -> None:
        self._current: Snapshot | None = None
        self._lock = asyncio.Lock()

    async def get(self, pool: asyncpg.Pool) -> Snapshot:
        generation = await resource_store.change_marker(pool)
        current = self._current
        if current is not None and current.generation == generation:
            return current
        async with self._lock:
            current = self._current
            if current is not None and current.generation == generation:
                return current
            self._current = current = await load_snapshot(pool)
            return current


async def load_snapshot(pool: asyncpg.Pool) -> Snapshot:
    """Read every resource and the generation in one repeatable-read transaction and parse them."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        generation = await resource_store.change_marker(conn)
        stored = await resource_store.list_resources(conn)
    return Snapshot(generation, _parse(stored))


def _parse(stored: Iterable[StoredResource]) -> Iterator[Entry]:
    for item in stored:
        try:
            resource = resource_from_dict(item.document)
        except ManifestError:
            # Stored documents were valid when written; a stricter later release may disagree.
            logger.exception("stored resource %s no longer parses; it is left out", item.key)
            continue
        yield Entry(item, with_version(resource, item.resource_version))
