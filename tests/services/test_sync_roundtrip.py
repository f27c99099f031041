"""Every resource kind goes from Ringfence to the cluster and from the cluster to Ringfence without loss."""

from __future__ import annotations

import kubernetes
from sync_support import NAMESPACE, every_writable_kind, pod, put, stored, synchronizer

from ringfence.model import ResourceKey
from services.common.db import inventory
from services.sync.documents import apply_body, from_cluster
from services.sync.kinds import KUBERNETES_KINDS, calico_kinds
from services.sync.plan import Action

pytest_plugins = ["sync_fixtures"]


KINDS = {kind.ringfence_kind: kind for kind in KUBERNETES_KINDS + calico_kinds("projectcalico.org/v3")}


def _read_back(cluster, key: ResourceKey, document: dict) -> dict | None:
    """The cluster's object for ``key``, read as the sync reads it."""
    kind = KINDS[key.kind]
    obj = cluster.get(apply_body(kind, document, resource_version=None))
    return None if obj is None else from_cluster(kind, obj).document


async def test_ringfence_resources_of_every_kind_are_applied_and_read_back_equal(cluster, cluster_client, sync_db):
    resources = every_writable_kind()
    assert {key.kind for key in resources} == {name for name, kind in KINDS.items() if kind.writable}
    await put(sync_db, resources)

    report = await synchronizer(cluster_client, sync_db).run_once()

    assert sorted(report.written.done[Action.APPLY]) == sorted(resources)
    assert report.written.failed == []
    for key, document in resources.items():
        assert _read_back(cluster, key, document) == document, key
        obj = cluster.get(apply_body(KINDS[key.kind], document, resource_version=None))
        assert [entry["manager"] for entry in obj["metadata"]["managedFields"]] == ["ringfence"]
    # The storefront namespace came the other way.
    assert (await stored(sync_db))[ResourceKey("Namespace", None, "storefront")]["metadata"]["labels"] == (
        NAMESPACE["metadata"]["labels"]
    )


async def test_a_second_pass_finds_nothing_to_do(cluster, cluster_client, sync_db):
    await put(sync_db, every_writable_kind())
    sync = synchronizer(cluster_client, sync_db)
    await sync.run_once()
    version = cluster.state.resource_version

    again = await sync.run_once()

    assert again.plan.items == ()
    assert cluster.state.resource_version == version  # nothing was written to the cluster


async def test_cluster_resources_of_every_kind_are_imported_equal(cluster, cluster_client, sync_db):
    resources = every_writable_kind()
    for key, document in resources.items():
        cluster.apply(apply_body(KINDS[key.kind], document, resource_version=None), manager="kubectl")

    report = await synchronizer(cluster_client, sync_db, read_write=False).run_once()

    imported = set(report.imported.done[Action.IMPORT])
    assert imported == set(resources) | {
        ResourceKey("Namespace", None, "storefront"),
        ResourceKey("Namespace", None, "kube-system"),
    }
    in_store = await stored(sync_db)
    for key, document in resources.items():
        assert in_store[key] == document, key


async def test_staged_policies_reach_the_cluster_and_promotion_makes_them_real(cluster, cluster_client, sync_db):
    resources = every_writable_kind()
    await put(sync_db, resources)
    sync = synchronizer(cluster_client, sync_db)
    await sync.run_once()
    custom = kubernetes.client.CustomObjectsApi(cluster.api_client())
    staged = custom.list_namespaced_custom_object("projectcalico.org", "v3", "storefront", "stagednetworkpolicies")
    assert [item["metadata"]["name"] for item in staged["items"]] == ["frontend"]

    # Promotion in Ringfence: the staged policy goes, its enforced twin comes.
    staged_key = ResourceKey("StagedNetworkPolicy", "storefront", "default.frontend")
    enforced = dict(resources[staged_key], kind="NetworkPolicy")
    await put(sync_db, {ResourceKey("NetworkPolicy", "storefront", "default.frontend"): enforced})
    from services.common.db import resources as store

    await store.apply_changes(sync_db, [store.ResourceChange(staged_key, None)], actor="alice")
    report = await sync.run_once()

    assert {(item.action, item.key.kind) for item in report.plan.items} == {
        (Action.APPLY, "NetworkPolicy"),
        (Action.DELETE, "StagedNetworkPolicy"),
    }
    staged = custom.list_namespaced_custom_object("projectcalico.org", "v3", "storefront", "stagednetworkpolicies")
    assert staged["items"] == []
    policies = custom.list_namespaced_custom_object("projectcalico.org", "v3", "storefront", "networkpolicies")
    assert sorted(item["metadata"]["name"] for item in policies["items"]) == ["backend", "frontend"]


async def test_deletions_travel_both_ways(cluster, cluster_client, sync_db):
    resources = every_writable_kind()
    await put(sync_db, resources)
    sync = synchronizer(cluster_client, sync_db)
    await sync.run_once()
    tier = ResourceKey("GlobalNetworkSet", None, "public-ips")
    allow_dns = ResourceKey("KubernetesNetworkPolicy", "storefront", "allow-dns")
    cluster.delete(apply_body(KINDS[tier.kind], resources[tier], resource_version=None))
    from services.common.db import resources as store

    await store.apply_changes(sync_db, [store.ResourceChange(allow_dns, None)], actor="alice")

    report = await sync.run_once()

    assert report.imported.done == {Action.REMOVE: [tier]}
    assert report.written.done == {Action.DELETE: [allow_dns]}
    assert tier not in await stored(sync_db)
    assert _read_back(cluster, allow_dns, resources[allow_dns]) is None


async def test_pods_and_namespaces_fill_the_inventory(cluster, cluster_client, sync_db):
    cluster.create(pod("frontend-864f4fcdfd-2hhv4", "frontend-864f4fcdfd-", {"app": "frontend"}))
    cluster.create(pod("frontend-864f4fcdfd-x9k2p", "frontend-864f4fcdfd-", {"app": "frontend"}))
    cluster.create(pod("backend-6cfbdd589f-aaaaa", "backend-6cfbdd589f-", {"app": "backend", "tier": "data"}))

    report = await synchronizer(cluster_client, sync_db, read_write=False).run_once()

    assert report.workloads_changed == 2
    workloads = {(w.namespace, w.name_aggr): w.labels for w in await inventory.list_workloads(sync_db)}
    assert workloads == {
        ("storefront", "backend-6cfbdd589f-*"): (("app", "backend"), ("tier", "data")),
        ("storefront", "frontend-864f4fcdfd-*"): (("app", "frontend"),),
    }
    namespaces = {n.name: n.labels for n in await inventory.list_namespaces(sync_db)}
    assert namespaces["storefront"] == (("kubernetes.io/metadata.name", "storefront"), ("twilio", "allowed"))
    again = await synchronizer(cluster_client, sync_db, read_write=False).run_once()
    assert (again.namespaces_changed, again.workloads_changed) == (0, 0)


async def test_objects_ringfence_cannot_read_are_reported_and_left_alone(cluster, cluster_client, sync_db):
    cluster.create(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "NetworkPolicy",
            "metadata": {"name": "broken", "namespace": "storefront"},
            "spec": {"selector": "app == ", "tier": "default"},
        }
    )

    report = await synchronizer(cluster_client, sync_db).run_once()

    assert len(report.snapshot.invalid) == 1
    assert "broken" in report.snapshot.invalid[0]
    assert not any(key.name.endswith("broken") for key in await stored(sync_db))
    assert (
        cluster.get(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "NetworkPolicy",
                "metadata": {"name": "broken", "namespace": "storefront"},
            }
        )
        is not None
    )
