"""The continuous sync: watches feed passes; changes on either side arrive; dropped streams change nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from sync_support import put, stored, synchronizer

from ringfence.model import ResourceKey
from services.sync.health import health_app
from services.sync.kinds import KUBERNETES_KINDS
from services.sync.runner import SyncError, SyncStatus, select_kinds

pytest_plugins = ["sync_fixtures"]


def _tier(name: str, order: int) -> dict:
    return {"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": name}, "spec": {"order": order}}


async def _eventually(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail("the sync did not catch up in time")
        await asyncio.sleep(0.05)


async def _probe(status: SyncStatus, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=health_app(status))
    async with httpx.AsyncClient(transport=transport, base_url="http://sync") as client:
        return await client.get(path)


async def test_the_running_sync_follows_both_sides_through_dropped_and_expired_watches(
    cluster, cluster_client, sync_pool
):
    sync = synchronizer(cluster_client, sync_pool, poll_seconds=0.1, debounce_seconds=0.05, watch_timeout_seconds=2)
    status = SyncStatus()
    stop = asyncio.Event()
    running = asyncio.create_task(sync.run(stop, status))
    try:

        async def in_store(key: ResourceKey) -> bool:
            return key in await stored(sync_pool)

        async def first_pass_done() -> bool:
            return status.passes >= 1

        await _eventually(first_pass_done)
        assert await in_store(ResourceKey("Namespace", None, "storefront"))
        assert (await _probe(status, "/readyz")).status_code == 200
        assert (await _probe(status, "/healthz")).status_code == 200

        # A change in the cluster is imported...
        cluster.create(_tier("security", 100), manager="kubectl")
        await _eventually(lambda: in_store(ResourceKey("Tier", None, "security")))

        # ... and a change in Ringfence is applied.
        network_set = {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet", "metadata": {"name": "ips"}}
        async with sync_pool.acquire() as conn:
            await put(conn, {ResourceKey("GlobalNetworkSet", None, "ips"): network_set})

        async def in_cluster() -> bool:
            return cluster.get(network_set) is not None

        await _eventually(in_cluster)

        # Streams cut mid-way: the watches resume and nothing is missed.
        cluster.drop_watches(abrupt=True)
        cluster.create(_tier("platform", 200), manager="kubectl")
        await _eventually(lambda: in_store(ResourceKey("Tier", None, "platform")))
        assert all(watcher.lists == 1 for watcher in status.watchers)

        # History forgotten: the watches list again; a deletion made meanwhile still arrives.
        cluster.compact()
        cluster.delete(_tier("platform", 200))

        async def removed() -> bool:
            return not await in_store(ResourceKey("Tier", None, "platform"))

        await _eventually(removed)
        readiness = (await _probe(status, "/readyz")).json()
        assert readiness["status"] == "ready"
        assert readiness["passes"] >= 4
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=15)
    assert not any(watcher.alive for watcher in status.watchers)
    assert (await _probe(status, "/healthz")).status_code == 503


async def test_not_ready_before_the_first_pass():
    status = SyncStatus()
    response = await _probe(status, "/readyz")
    assert response.status_code == 503
    assert response.json()["passes"] == 0


@pytest.mark.parametrize(
    ("served", "choice", "calico"),
    [
        ({"v1", "projectcalico.org/v3", "crd.projectcalico.org/v1"}, "auto", "projectcalico.org/v3"),
        ({"v1", "crd.projectcalico.org/v1"}, "auto", "crd.projectcalico.org/v1"),
        ({"v1"}, "auto", None),
        (
            {"v1", "projectcalico.org/v3", "crd.projectcalico.org/v1"},
            "crd.projectcalico.org/v1",
            "crd.projectcalico.org/v1",
        ),
        ({"v1", "projectcalico.org/v3"}, "none", None),
    ],
)
def test_select_kinds(served, choice, calico):
    kinds = select_kinds(served, choice)
    assert kinds[: len(KUBERNETES_KINDS)] == KUBERNETES_KINDS
    assert {kind.api_version for kind in kinds[len(KUBERNETES_KINDS) :]} == ({calico} if calico else set())
    # Calico resources are written only through the API server.
    assert all(
        kind.writable == (kind.api_version == "projectcalico.org/v3")
        for kind in kinds
        if kind.group.endswith("projectcalico.org")
    )


def test_select_kinds_refuses_an_api_the_cluster_lacks():
    with pytest.raises(SyncError, match=r"does not serve projectcalico\.org/v3"):
        select_kinds({"v1"}, "projectcalico.org/v3")
