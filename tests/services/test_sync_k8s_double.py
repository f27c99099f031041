"""The Kubernetes API double speaks the protocol the real client expects (driven by the real client)."""

from __future__ import annotations

import json

import kubernetes
import pytest
from k8s_double import KubernetesDouble
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from sync_support import NAMESPACE

pytest_plugins = ["sync_fixtures"]

POLICY = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "NetworkPolicy",
    "metadata": {"name": "backend", "namespace": "storefront", "labels": {"app": "backend"}},
    "spec": {"tier": "default", "selector": "app == 'backend'", "order": 100},
}
APPLY = "application/apply-patch+yaml"


def _custom(cluster: KubernetesDouble) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(cluster.api_client())


def _apply(cluster, body, *, manager="ringfence", force=False):
    response = _custom(cluster).patch_namespaced_custom_object(
        "projectcalico.org",
        "v3",
        body["metadata"]["namespace"],
        "networkpolicies",
        body["metadata"]["name"],
        body,
        field_manager=manager,
        force=force,
        _content_type=APPLY,
        _preload_content=False,
    )
    return json.loads(response.data)


def test_typed_client_lists_namespaces(cluster):
    names = [item.metadata.name for item in kubernetes.client.CoreV1Api(cluster.api_client()).list_namespace().items]
    assert names == ["kube-system", "storefront"]


def test_lists_carry_a_version_and_built_in_items_omit_apiversion_and_kind(cluster):
    _apply(cluster, POLICY)
    core = json.loads(kubernetes.client.CoreV1Api(cluster.api_client()).list_namespace(_preload_content=False).data)
    assert core["kind"] == "NamespaceList"
    assert int(core["metadata"]["resourceVersion"]) >= max(int(i["metadata"]["resourceVersion"]) for i in core["items"])
    assert all("kind" not in item for item in core["items"])
    custom = _custom(cluster).list_cluster_custom_object("projectcalico.org", "v3", "networkpolicies")
    assert [(item["kind"], item["metadata"]["name"]) for item in custom["items"]] == [("NetworkPolicy", "backend")]


def test_discovery_lists_the_calico_group(cluster):
    groups = kubernetes.client.ApisApi(cluster.api_client()).get_api_versions()
    assert {group.name for group in groups.groups} == {"networking.k8s.io", "projectcalico.org"}


def test_server_side_apply_creates_tracks_the_manager_and_removes_fields_no_longer_applied(cluster):
    created = _apply(cluster, POLICY)
    assert [entry["manager"] for entry in created["metadata"]["managedFields"]] == ["ringfence"]
    assert created["metadata"]["managedFields"][0]["operation"] == "Apply"
    without_order = json.loads(json.dumps(POLICY))
    del without_order["spec"]["order"]
    updated = _apply(cluster, without_order)
    assert "order" not in updated["spec"]
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


def test_a_no_op_apply_keeps_the_version(cluster):
    first = _apply(cluster, POLICY)
    again = _apply(cluster, POLICY)
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_apply_conflicts_with_fields_another_manager_changed_unless_forced(cluster):
    _apply(cluster, POLICY)
    cluster.patch(POLICY, {"spec": {"order": 5}}, manager="kubectl-edit")
    with pytest.raises(ApiException) as refused:
        _apply(cluster, POLICY)
    assert refused.value.status == 409
    assert "kubectl-edit" in json.loads(refused.value.body)["message"]
    forced = _apply(cluster, POLICY, force=True)
    assert forced["spec"]["order"] == 100


def test_apply_with_a_stale_resource_version_is_refused(cluster):
    created = _apply(cluster, POLICY)
    cluster.patch(POLICY, {"metadata": {"labels": {"team": "a"}}})
    stale = POLICY | {"metadata": POLICY["metadata"] | {"resourceVersion": created["metadata"]["resourceVersion"]}}
    with pytest.raises(ApiException) as refused:
        _apply(cluster, stale, force=True)
    assert refused.value.status == 409


def test_namespaced_objects_need_their_namespace(cluster):
    orphan = POLICY | {"metadata": {"name": "x", "namespace": "nowhere"}}
    with pytest.raises(ApiException) as refused:
        _apply(cluster, orphan)
    assert refused.value.status == 404


def test_delete_honours_the_resource_version_precondition(cluster):
    created = _apply(cluster, POLICY)
    cluster.patch(POLICY, {"spec": {"order": 7}})
    custom = _custom(cluster)
    stale = kubernetes.client.V1DeleteOptions(
        preconditions=kubernetes.client.V1Preconditions(resource_version=created["metadata"]["resourceVersion"])
    )
    with pytest.raises(ApiException) as refused:
        custom.delete_namespaced_custom_object(
            "projectcalico.org", "v3", "storefront", "networkpolicies", "backend", body=stale
        )
    assert refused.value.status == 409
    custom.delete_namespaced_custom_object("projectcalico.org", "v3", "storefront", "networkpolicies", "backend")
    assert cluster.get(POLICY) is None


def test_the_official_watch_helper_streams_events(cluster):
    core = kubernetes.client.CoreV1Api(cluster.api_client())
    listed = core.list_namespace()
    cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "payments"}})
    watch = kubernetes.watch.Watch()
    events = []
    for event in watch.stream(
        core.list_namespace, resource_version=listed.metadata.resource_version, timeout_seconds=1
    ):
        events.append((event["type"], event["object"].metadata.name))
        watch.stop()
    assert events == [("ADDED", "payments")]


def test_watch_without_a_version_starts_with_every_object(cluster):
    response = kubernetes.client.CoreV1Api(cluster.api_client()).list_namespace(
        watch=True, timeout_seconds=1, _preload_content=False
    )
    events = [json.loads(line) for line in iter_resp_lines(response)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "kube-system"),
        ("ADDED", "storefront"),
    ]


def test_watch_from_a_compacted_version_answers_410_gone(cluster):
    core = kubernetes.client.CoreV1Api(cluster.api_client())
    old = core.list_namespace().metadata.resource_version
    cluster.compact()
    response = core.list_namespace(watch=True, resource_version=old, timeout_seconds=1, _preload_content=False)
    events = [json.loads(line) for line in iter_resp_lines(response)]
    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410


def test_watch_sends_bookmarks_when_asked(cluster):
    core = kubernetes.client.CoreV1Api(cluster.api_client())
    version = core.list_namespace().metadata.resource_version
    cluster.create({**POLICY, "metadata": {**POLICY["metadata"], "name": "other"}})  # another type moves the clock
    response = core.list_namespace(
        watch=True, resource_version=version, allow_watch_bookmarks=True, timeout_seconds=2, _preload_content=False
    )
    events = [json.loads(line) for line in iter_resp_lines(response)]
    bookmarks = [e["object"]["metadata"]["resourceVersion"] for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks
    assert int(bookmarks[-1]) > int(version)


def test_created_objects_get_server_metadata(cluster):
    stored = cluster.get(NAMESPACE)
    assert stored is not None
    assert stored["metadata"]["uid"]
    assert stored["metadata"]["creationTimestamp"].endswith("Z")
