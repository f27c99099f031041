"""Changes on one side travel; changes on both sides are conflicts the cluster wins, recorded in the audit log."""

from __future__ import annotations

import copy

from sync_support import put, stored, synchronizer

from ringfence.model import ResourceKey
from services.common.db import audit
from services.common.db import resources as store
from services.sync.conflicts import recent_conflicts
from services.sync.plan import Action
from services.sync.store import SYNC_ACTOR

pytest_plugins = ["sync_fixtures"]

KEY = ResourceKey("NetworkPolicy", "storefront", "default.backend")
POLICY = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "NetworkPolicy",
    "metadata": {"name": "backend", "namespace": "storefront"},
    "spec": {"tier": "default", "order": 100, "selector": "app == 'backend'"},
}


def _with_order(order: float) -> dict:
    document = copy.deepcopy(POLICY)
    document["spec"]["order"] = order
    return document


async def _synced(cluster, cluster_client, conn, *, read_write=True):
    """The policy created in Ringfence and synced once: both sides hold POLICY."""
    await put(conn, {KEY: POLICY})
    sync = synchronizer(cluster_client, conn, read_write=read_write)
    await sync.run_once()
    if not read_write:
        cluster.apply(POLICY, manager="kubectl")
        await sync.run_once()
    assert cluster.get(POLICY)["spec"]["order"] == 100
    return sync


async def _sync_entries(conn, action=None):
    entries, _ = await audit.page(conn, first=100, where=audit.AuditFilter(actor=SYNC_ACTOR, action=action))
    return entries


async def test_a_cluster_change_is_imported(cluster, cluster_client, sync_db):
    sync = await _synced(cluster, cluster_client, sync_db)
    cluster.patch(POLICY, {"spec": {"order": 5}}, manager="kubectl-edit")

    report = await sync.run_once()

    assert [(item.action, item.key) for item in report.plan.items] == [(Action.IMPORT, KEY)]
    assert (await stored(sync_db))[KEY]["spec"]["order"] == 5
    entry = (await _sync_entries(sync_db, "sync.import"))[0]
    assert (entry.before["spec"]["order"], entry.after["spec"]["order"]) == (100, 5)


async def test_a_ringfence_change_is_applied(cluster, cluster_client, sync_db):
    sync = await _synced(cluster, cluster_client, sync_db)
    await put(sync_db, {KEY: _with_order(7)})

    report = await sync.run_once()

    assert [(item.action, item.key) for item in report.plan.items] == [(Action.APPLY, KEY)]
    assert cluster.get(POLICY)["spec"]["order"] == 7
    # Applying takes over a field another manager set earlier: the change in Ringfence is newer.
    cluster.patch(POLICY, {"spec": {"selector": "app == 'api'"}}, manager="kubectl-edit")
    await sync.run_once()  # imported
    await put(sync_db, {KEY: _with_order(8) | {"spec": {**_with_order(8)["spec"], "selector": "app == 'api'"}}})
    await sync.run_once()
    assert cluster.get(POLICY)["spec"] == {"tier": "default", "order": 8, "selector": "app == 'api'"}


async def test_changes_on_both_sides_are_a_conflict_the_cluster_wins(cluster, cluster_client, sync_db):
    sync = await _synced(cluster, cluster_client, sync_db)
    cluster.patch(POLICY, {"spec": {"order": 5}}, manager="kubectl-edit")
    await put(sync_db, {KEY: _with_order(7)})
    version_in_ringfence = (await store.get_resource(sync_db, KEY)).resource_version

    report = await sync.run_once()

    assert [(item.action, item.key) for item in report.plan.items] == [(Action.CONFLICT, KEY)]
    assert cluster.get(POLICY)["spec"]["order"] == 5  # never overwritten
    assert (await stored(sync_db))[KEY]["spec"]["order"] == 5  # the cluster's version won
    conflicts = await recent_conflicts(sync_db)
    assert len(conflicts) == 1
    conflict = conflicts[0]
    assert conflict.key == KEY
    assert conflict.ringfence["spec"]["order"] == 7  # the losing change is kept, with its version
    assert conflict.ringfence["metadata"]["resourceVersion"] == str(version_in_ringfence)
    assert conflict.cluster["spec"]["order"] == 5
    # Settled: the next pass has nothing to do.
    assert (await sync.run_once()).plan.items == ()


async def test_deleted_in_the_cluster_and_changed_in_ringfence_removes_it_and_records_the_conflict(
    cluster, cluster_client, sync_db
):

    sync = await _synced(cluster, cluster_client, sync_db)
    cluster.delete(POLICY)
    await put(sync_db, {KEY: _with_order(7)})

    report = await sync.run_once()

    assert [item.action for item in report.plan.items] == [Action.CONFLICT]
    assert KEY not in await stored(sync_db)
    assert cluster.get(POLICY) is None
    (conflict,) = await recent_conflicts(sync_db)
    assert conflict.cluster is None
    assert conflict.ringfence["spec"]["order"] == 7


async def test_different_on_both_sides_before_any_sync_is_a_conflict(cluster, cluster_client, sync_db):
    cluster.apply(_with_order(1), manager="kubectl")
    await put(sync_db, {KEY: _with_order(2)})

    report = await synchronizer(cluster_client, sync_db).run_once()

    (item,) = [item for item in report.plan.items if item.key == KEY]  # the namespaces are imported too
    assert item.action is Action.CONFLICT
    assert "never synced" in item.reason
    assert (await stored(sync_db))[KEY]["spec"]["order"] == 1


async def test_read_only_holds_ringfence_changes_until_read_write(cluster, cluster_client, sync_db):
    await _synced(cluster, cluster_client, sync_db, read_write=False)
    await put(sync_db, {KEY: _with_order(9)})

    held = await synchronizer(cluster_client, sync_db, read_write=False).run_once()

    assert [item.action for item in held.plan.items] == [Action.HOLD]
    assert cluster.get(POLICY)["spec"]["order"] == 100
    applied = await synchronizer(cluster_client, sync_db, read_write=True).run_once()
    assert [item.action for item in applied.plan.items] == [Action.APPLY]
    assert cluster.get(POLICY)["spec"]["order"] == 9


async def test_a_cluster_change_between_plan_and_write_is_not_overwritten(cluster, cluster_client, sync_db):
    sync = await _synced(cluster, cluster_client, sync_db)
    await put(sync_db, {KEY: _with_order(7)})
    snapshot = sync.snapshot(sync.list_cluster())
    plan = await sync.plan(snapshot)
    assert [item.action for item in plan.items] == [Action.APPLY]
    cluster.patch(POLICY, {"spec": {"order": 5}}, manager="kubectl-edit")  # lands after the plan was made

    report = await sync.execute(plan, snapshot)

    assert report.written.count(Action.APPLY) == 0
    assert [key for key, _ in report.written.skipped] == [KEY]
    assert cluster.get(POLICY)["spec"]["order"] == 5
    follow_up = await sync.run_once()
    assert [item.action for item in follow_up.plan.items] == [Action.CONFLICT]


async def test_a_ringfence_change_between_plan_and_import_is_not_overwritten(cluster, cluster_client, sync_db):
    sync = await _synced(cluster, cluster_client, sync_db)
    cluster.patch(POLICY, {"spec": {"order": 5}}, manager="kubectl-edit")
    snapshot = sync.snapshot(sync.list_cluster())
    plan = await sync.plan(snapshot)
    assert [item.action for item in plan.items] == [Action.IMPORT]
    await put(sync_db, {KEY: _with_order(7)})  # lands after the plan was made

    report = await sync.execute(plan, snapshot)

    assert report.imported.count(Action.IMPORT) == 0
    assert [key for key, _ in report.imported.skipped] == [KEY]
    assert (await stored(sync_db))[KEY]["spec"]["order"] == 7


async def test_every_sync_entry_is_attributed_to_the_sync(cluster, cluster_client, sync_db):
    sync = await _synced(cluster, cluster_client, sync_db)
    cluster.patch(POLICY, {"spec": {"order": 5}}, manager="kubectl-edit")
    await sync.run_once()
    actions = {entry.action for entry in await _sync_entries(sync_db)}
    assert {"sync.apply", "sync.import"} <= actions
    history = await store.history(sync_db, KEY)
    assert [version.changed_by for version in history] == [SYNC_ACTOR, "alice"]
