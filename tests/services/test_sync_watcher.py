"""List + watch: the local copy follows the cluster, survives dropped streams and relists after 410 Gone."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from services.sync.client import ResourceExpiredError
from services.sync.kinds import NAMESPACES, calico_kinds
from services.sync.watcher import Watcher

pytest_plugins = ["sync_fixtures"]


TIERS = calico_kinds("projectcalico.org/v3")[0]


def _namespace(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _tier(name: str, order: int) -> dict:
    return {"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": name}, "spec": {"order": order}}


def _eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the watcher did not catch up in time")
        time.sleep(0.02)


def _names(watcher: Watcher) -> set[str]:
    return {obj["metadata"]["name"] for obj in watcher.objects()}


def _copy_matches(watcher: Watcher, cluster) -> bool:
    server = {obj["metadata"]["name"]: obj for obj in cluster.objects(watcher.kind.api_version, watcher.kind.kind)}
    mine = {obj["metadata"]["name"]: obj for obj in watcher.objects()}
    return mine == server


@pytest.fixture
def running(cluster_client):
    started: list[Watcher] = []

    def start(kind, **options) -> Watcher:
        watcher = Watcher(cluster_client, kind, retry_delay=0.05, **options)
        watcher.start()
        started.append(watcher)
        assert watcher.synced.wait(10)
        return watcher

    yield start
    for watcher in started:
        watcher.stop()


def test_the_copy_follows_additions_changes_and_deletions(cluster, running):
    watcher = running(NAMESPACES)
    assert _names(watcher) == {"kube-system", "storefront"}
    cluster.create(_namespace("payments", team="pay"))
    cluster.patch(_namespace("storefront"), {"metadata": {"labels": {"tier": "web"}}})
    cluster.delete(_namespace("kube-system"))
    _eventually(lambda: _copy_matches(watcher, cluster))
    assert _names(watcher) == {"payments", "storefront"}
    assert watcher.lists == 1


@pytest.mark.parametrize("abrupt", [True, False], ids=["connection-cut", "stream-closed"])
def test_a_dropped_stream_resumes_from_the_last_version_without_listing_again(cluster, running, abrupt, caplog):
    caplog.set_level(logging.INFO, logger="services.sync.watcher")
    watcher = running(NAMESPACES)
    cluster.create(_namespace("before"))
    _eventually(lambda: "before" in _names(watcher))
    for round_number in range(3):
        cluster.drop_watches(abrupt=abrupt)
        # Changes made while the stream is down reach the copy through the resumed watch.
        cluster.create(_namespace(f"while-down-{round_number}"))
        cluster.delete(_namespace("before") if round_number == 0 else _namespace(f"while-down-{round_number - 1}"))
        _eventually(lambda: _copy_matches(watcher, cluster))
    assert watcher.lists == 1
    assert watcher.resumes >= 3
    assert watcher.expirations == 0
    broke = [record for record in caplog.records if "the watch broke" in record.getMessage()]
    assert bool(broke) == abrupt  # a cut connection is an error; a closed stream is the normal end


def test_410_gone_makes_the_watcher_list_again_and_forget_objects_deleted_meanwhile(cluster, cluster_client):
    cluster.create(_tier("security", 100))
    cluster.create(_tier("platform", 200))
    watcher = Watcher(cluster_client, TIERS, timeout_seconds=1)
    watcher.relist()
    assert _names(watcher) == {"security", "platform"}
    cluster.delete(_tier("platform", 200))
    cluster.compact()  # the deletion event is forgotten
    with pytest.raises(ResourceExpiredError):
        watcher.watch_once()
    assert _names(watcher) == {"security", "platform"}  # the watch alone cannot know
    watcher.relist()
    assert _names(watcher) == {"security"}
    assert watcher.lists == 2


def test_the_running_watcher_relists_after_410(cluster, running):
    watcher = running(TIERS)
    cluster.create(_tier("security", 100))
    _eventually(lambda: "security" in _names(watcher))
    cluster.compact()
    cluster.create(_tier("platform", 200))
    _eventually(lambda: _copy_matches(watcher, cluster) and watcher.lists == 2)
    assert watcher.expirations == 1


def test_bookmarks_carry_the_version_forward_while_nothing_of_the_kind_changes(cluster, running):
    watcher = running(TIERS)
    listed = int(watcher.resource_version)
    cluster.create(_namespace("elsewhere"))  # another kind moves the cluster's version on
    newest = cluster.state.resource_version
    _eventually(lambda: int(watcher.resource_version) >= newest)
    assert int(watcher.resource_version) > listed
    assert watcher.objects() == []


def test_on_change_is_called_for_the_first_list_and_every_change(cluster, cluster_client):
    calls: list[int] = []
    watcher = Watcher(cluster_client, NAMESPACES, on_change=lambda: calls.append(1), retry_delay=0.05)
    watcher.start()
    try:
        assert watcher.synced.wait(10)
        _eventually(lambda: len(calls) >= 1)
        cluster.create(_namespace("payments"))
        _eventually(lambda: len(calls) >= 2)
    finally:
        watcher.stop()
    assert not watcher.alive


def test_stop_ends_a_watch_blocked_on_an_idle_stream(cluster, cluster_client):
    watcher = Watcher(cluster_client, NAMESPACES, timeout_seconds=600)
    watcher.start()
    assert watcher.synced.wait(10)
    time.sleep(0.2)  # the watch is now waiting for events
    started = time.monotonic()
    watcher.stop(timeout=5)
    assert not watcher.alive
    assert time.monotonic() - started < 3
