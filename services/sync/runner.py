"""The sync loop: cluster state from watches, Ringfence state from the store, a plan, its execution.

One pass reads both sides whole and carries out the plan (:mod:`services.sync.plan`): imports first,
then (read-write) writes to the cluster, then the inventory of namespaces and workloads. Passes run
when a watch reports a change, when Ringfence's resources change (the store's generation number
moves), and every ``resync_seconds`` regardless. ``--once`` lists instead of watching and runs one pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ringfence.manifests import ManifestError
from ringfence.model import ResourceKey
from services.common.db import resources
from services.sync import journal
from services.sync import store as sync_store
from services.sync.client import ClusterClient, ClusterError
from services.sync.documents import ClusterObject, InvalidObjectError, canonical, from_cluster
from services.sync.importer import ImportReport, import_inventory, import_items
from services.sync.kinds import (
    CALICO_API_SERVER,
    CALICO_CRDS,
    KUBERNETES_KINDS,
    NAMESPACES,
    PODS,
    SERVICES,
    ClusterKind,
    calico_kinds,
)
from services.sync.plan import RingfenceSide, SyncPlan, plan_sync
from services.sync.watcher import DEFAULT_WATCH_TIMEOUT, Watcher
from services.sync.writer import WriteReport, write_items

logger = logging.getLogger(__name__)

Document = dict[str, Any]
AUTO = "auto"
NO_CALICO = "none"


class SyncError(Exception):
    """The sync cannot run as configured (for example, a Calico API the cluster does not serve)."""


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """How the sync runs.

    ``calico_api``: ``auto``, ``projectcalico.org/v3``, ``crd.projectcalico.org/v1`` or ``none``.
    """

    read_write: bool = False
    calico_api: str = AUTO
    resync_seconds: float = 60.0
    poll_seconds: float = 2.0
    debounce_seconds: float = 0.2
    watch_timeout_seconds: int = DEFAULT_WATCH_TIMEOUT


def select_kinds(served: set[str], calico_api: str) -> tuple[ClusterKind, ...]:
    """The kinds to sync, given the group versions the cluster serves.

    ``auto`` prefers the Calico API server (the only way Calico supports writes) and falls back to
    reading the CRDs; without either only Kubernetes resources are synced.
    """
    if calico_api == AUTO:
        calico_api = next((api for api in (CALICO_API_SERVER, CALICO_CRDS) if api in served), NO_CALICO)
        if calico_api == NO_CALICO:
            logger.warning("the cluster serves no Calico API: syncing Kubernetes resources only")
    if calico_api == NO_CALICO:
        return KUBERNETES_KINDS
    if calico_api not in {CALICO_API_SERVER, CALICO_CRDS}:
        raise SyncError(f"unknown Calico API {calico_api!r}: use {CALICO_API_SERVER} or {CALICO_CRDS}")
    if calico_api not in served:
        raise SyncError(f"the cluster does not serve {calico_api}")
    return KUBERNETES_KINDS + calico_kinds(calico_api)


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """The cluster as one pass sees it: Ringfence resources by key, plus what feeds the inventory."""

    objects: dict[ResourceKey, ClusterObject]
    invalid: list[str]
    namespaces: list[Document]
    pods: list[Document]
    services: list[Document]


@dataclass(slots=True)
class PassReport:
    """One pass: its plan and what the import, the writes and the inventory did."""

    plan: SyncPlan
    snapshot: ClusterSnapshot
    imported: ImportReport
    written: WriteReport
    namespaces_changed: int = 0
    workloads_changed: int = 0


@dataclass(slots=True)
class SyncStatus:
    """What health and readiness probes report."""

    watchers: list[Watcher] = field(default_factory=list)
    passes: int = 0
    last_pass_at: datetime | None = None
    last_error: str | None = None

    @property
    def healthy(self) -> bool:
        return all(watcher.alive for watcher in self.watchers)

    @property
    def ready(self) -> bool:
        return self.passes > 0 and self.last_error is None

    def describe(self) -> dict[str, Any]:
        return {
            "passes": self.passes,
            "lastPassAt": None if self.last_pass_at is None else self.last_pass_at.isoformat(),
            "lastError": self.last_error,
            "watches": {
                str(watcher.kind): {
                    "alive": watcher.alive,
                    "resourceVersion": watcher.resource_version,
                    "lists": watcher.lists,
                    "resumes": watcher.resumes,
                    "lastError": watcher.last_error,
                }
                for watcher in self.watchers
            },
        }


class Synchronizer:
    """Keeps Ringfence's store and the cluster in step for the given kinds.

    ``db`` is a pool, or one connection (used for one thing at a time: a test's transaction).
    """

    def __init__(
        self,
        client: ClusterClient,
        db: asyncpg.Pool | asyncpg.Connection,
        kinds: Sequence[ClusterKind],
        options: SyncOptions,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.db = db
        self.kinds = tuple(kinds)
        self.options = options
        self.clock = clock
        self.by_ringfence_kind = {kind.ringfence_kind: kind for kind in self.kinds if kind.ringfence_kind}
        self.writable_kinds = frozenset(name for name, kind in self.by_ringfence_kind.items() if kind.writable)
        self._converted: dict[tuple[str, str, str, str], tuple[str, ClusterObject | str]] = {}

    # --- one pass --------------------------------------------------------------------------------

    def list_cluster(self) -> dict[ClusterKind, list[Document]]:
        """Every object of every kind, listed now (blocking)."""
        return {kind: self.client.list(kind, request_timeout=60).items for kind in self.kinds}

    def snapshot(self, objects: Mapping[ClusterKind, Sequence[Document]]) -> ClusterSnapshot:
        """Read the cluster objects; conversions are remembered per object version."""
        by_key: dict[ResourceKey, ClusterObject] = {}
        invalid: list[str] = []
        seen: set[tuple[str, str, str, str]] = set()
        for kind, documents in objects.items():
            if kind.ringfence_kind is None:
                continue
            for obj in documents:
                converted = self._convert(kind, obj, seen)
                if isinstance(converted, str):
                    invalid.append(converted)
                elif converted.key in by_key:
                    invalid.append(f"{converted.key} is defined twice in the cluster; the first one is used")
                else:
                    by_key[converted.key] = converted
        for stale in set(self._converted) - seen:
            del self._converted[stale]
        return ClusterSnapshot(
            objects=by_key,
            invalid=invalid,
            namespaces=list(objects.get(NAMESPACES, ())),
            pods=list(objects.get(PODS, ())),
            services=list(objects.get(SERVICES, ())),
        )

    def _convert(self, kind: ClusterKind, obj: Document, seen: set[tuple[str, str, str, str]]) -> ClusterObject | str:
        metadata = obj.get("metadata") or {}
        memo_key = (kind.api_version, kind.plural, str(metadata.get("namespace") or ""), str(metadata.get("name")))
        seen.add(memo_key)
        version = str(metadata.get("resourceVersion") or "")
        memo = self._converted.get(memo_key)
        if memo is not None and memo[0] == version and version:
            return memo[1]
        try:
            converted: ClusterObject | str = from_cluster(kind, obj)
        except InvalidObjectError as error:
            converted = f"skipped, not valid for Ringfence: {error}"
        self._converted[memo_key] = (version, converted)
        return converted

    async def plan(self, snapshot: ClusterSnapshot) -> SyncPlan:
        """Compare the snapshot with the store and the bases."""
        stored = await resources.list_resources(self.db, kinds=sorted(self.by_ringfence_kind))
        ringfence: dict[ResourceKey, RingfenceSide] = {}
        for resource in stored:
            try:
                document = canonical(resource.document)
            except ManifestError as error:
                logger.warning("stored %s no longer validates, left out of the sync: %s", resource.key, error)
                continue
            ringfence[resource.key] = RingfenceSide(document, resource.resource_version)
        bases = await sync_store.bases(self.db, journal.BASE_ACTIONS)
        return plan_sync(
            snapshot.objects,
            ringfence,
            bases,
            writable_kinds=self.writable_kinds,
            read_write=self.options.read_write,
        )

    async def execute(self, plan: SyncPlan, snapshot: ClusterSnapshot) -> PassReport:
        """Carry out ``plan``: imports, then (read-write) cluster writes, then the inventory."""
        async with self._connection() as conn:
            imported = await import_items(conn, plan.items)
            written = WriteReport()
            if self.options.read_write:
                written = await write_items(conn, self.client, plan.items, self.by_ringfence_kind)
            namespaces, workloads = await import_inventory(conn, snapshot.namespaces, snapshot.pods, now=self.clock())
        return PassReport(plan, snapshot, imported, written, namespaces, workloads)

    async def run_once(self, *, dry_run: bool = False) -> PassReport:
        """List the cluster, plan, and (unless ``dry_run``) carry the plan out."""
        snapshot = self.snapshot(await asyncio.to_thread(self.list_cluster))
        plan = await self.plan(snapshot)
        if dry_run:
            return PassReport(plan, snapshot, ImportReport(), WriteReport())
        return await self.execute(plan, snapshot)

    # --- continuous ------------------------------------------------------------------------------

    async def run(
        self,
        stop: asyncio.Event,
        status: SyncStatus | None = None,
        *,
        on_pass: Callable[[PassReport], None] = lambda _: None,
    ) -> None:
        """Watch every kind and run passes until ``stop`` is set."""
        status = status if status is not None else SyncStatus()
        loop = asyncio.get_running_loop()
        dirty = asyncio.Event()

        def changed() -> None:
            loop.call_soon_threadsafe(dirty.set)

        watchers = [
            Watcher(self.client, kind, on_change=changed, timeout_seconds=self.options.watch_timeout_seconds)
            for kind in self.kinds
        ]
        status.watchers = watchers
        for watcher in watchers:
            watcher.start()
        try:
            while not all(watcher.synced.is_set() for watcher in watchers):
                if await _wait(stop, 0.1):
                    return
            generation: int | None = None
            last_pass = 0.0
            while not stop.is_set():
                current = await _generation(self.db)
                due = time.monotonic() - last_pass >= self.options.resync_seconds
                if dirty.is_set() or due or current != generation:
                    if await _wait(stop, self.options.debounce_seconds):
                        return
                    dirty.clear()
                    generation = current
                    last_pass = time.monotonic()
                    report = await self._pass(watchers, status)
                    if report is not None:
                        on_pass(report)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(dirty.wait(), timeout=self.options.poll_seconds)
        finally:
            await asyncio.gather(*(asyncio.to_thread(watcher.stop) for watcher in watchers))

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        if isinstance(self.db, asyncpg.Pool):
            async with self.db.acquire() as conn:
                yield conn
        else:
            yield self.db

    async def _pass(self, watchers: Sequence[Watcher], status: SyncStatus) -> PassReport | None:
        try:
            snapshot = self.snapshot({watcher.kind: watcher.objects() for watcher in watchers})
            report = await self.execute(await self.plan(snapshot), snapshot)
        except (asyncpg.PostgresError, OSError, ClusterError) as error:
            logger.warning("sync pass failed: %s", error)
            status.last_error = f"{type(error).__name__}: {error}"
            return None
        status.passes += 1
        status.last_pass_at = self.clock()
        status.last_error = None
        return report


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True when stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


async def _generation(db: asyncpg.Pool | asyncpg.Connection) -> int | None:
    try:
        return await resources.generation(db)
    except (asyncpg.PostgresError, OSError):
        return None
