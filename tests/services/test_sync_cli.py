"""``ringfence sync`` from the command line, against the API double and a database of its own."""

from __future__ import annotations

import asyncio

import asyncpg
import kubernetes
import pytest
import yaml
from click.testing import CliRunner
from sync_support import put, stored

from ringfence.model import ResourceKey
from services.common.db import audit, configure_connection
from services.sync.cli import sync

pytest_plugins = ["sync_fixtures"]


STAGED_KEY = ResourceKey("StagedNetworkPolicy", "storefront", "default.frontend")
STAGED = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "StagedNetworkPolicy",
    "metadata": {"name": "frontend", "namespace": "storefront"},
    "spec": {"tier": "default", "selector": "app == 'frontend'", "types": ["Ingress"]},
}
TIER = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "Tier",
    "metadata": {"name": "security"},
    "spec": {"order": 100, "defaultAction": "Pass"},
}


@pytest.fixture
async def fresh_database_url(migrated_database_factory) -> str:
    """A migrated database of the test's own (the command commits what it does)."""
    return await migrated_database_factory()


def _database(url: str, work):
    async def run():
        connection = await asyncpg.connect(url)
        await configure_connection(connection)
        try:
            return await work(connection)
        finally:
            await connection.close()

    return asyncio.run(run())


def _invoke(*arguments: str):
    return CliRunner().invoke(sync, list(arguments), catch_exceptions=False)


def _staged_in_cluster(cluster) -> list[str]:
    custom = kubernetes.client.CustomObjectsApi(cluster.api_client())
    listed = custom.list_namespaced_custom_object("projectcalico.org", "v3", "storefront", "stagednetworkpolicies")
    return [item["metadata"]["name"] for item in listed["items"]]


def test_dry_run_prints_the_plan_and_changes_nothing_then_a_pass_applies_it(cluster, fresh_database_url, tmp_path):
    kubeconfig = str(cluster.write_kubeconfig(tmp_path / "kubeconfig"))
    cluster.create(TIER, manager="kubectl")
    _database(fresh_database_url, lambda conn: put(conn, {STAGED_KEY: STAGED}))
    version = cluster.state.resource_version

    dry = _invoke("--read-write", "--dry-run", "--kubeconfig", kubeconfig, "--database-url", fresh_database_url)

    assert dry.exit_code == 0, dry.output
    lines = dry.output.splitlines()
    assert lines[0].startswith(f"sync read-write with {cluster.url} (Calico: projectcalico.org/v3) (dry run): ")
    assert "1 apply" in lines[0]
    assert "  import    Tier security" in "\n".join(lines)
    assert any(line.startswith("  apply     StagedNetworkPolicy storefront/default.frontend") for line in lines)
    manifests = dry.output.split("# would apply (server-side apply, field manager ringfence):\n", 1)[1]
    (body,) = list(yaml.safe_load_all(manifests))
    assert body["kind"] == "StagedNetworkPolicy"
    assert body["metadata"] == {"name": "frontend", "namespace": "storefront"}
    # Nothing changed on either side.
    assert cluster.state.resource_version == version
    assert _staged_in_cluster(cluster) == []
    assert set(_database(fresh_database_url, stored)) == {STAGED_KEY}
    assert _database(fresh_database_url, audit.count) == 0

    applied = _invoke("--read-write", "--once", "--kubeconfig", kubeconfig, "--database-url", fresh_database_url)

    assert applied.exit_code == 0, applied.output
    assert "(dry run)" not in applied.output
    assert _staged_in_cluster(cluster) == ["frontend"]
    assert ResourceKey("Tier", None, "security") in _database(fresh_database_url, stored)

    again = _invoke("--dry-run", "--kubeconfig", kubeconfig, "--database-url", fresh_database_url)
    assert again.output.splitlines()[0].endswith("(dry run): nothing to do: the cluster and Ringfence agree")


def test_read_only_dry_run_shows_held_changes(cluster, fresh_database_url, tmp_path):
    kubeconfig = str(cluster.write_kubeconfig(tmp_path / "kubeconfig"))
    key = ResourceKey("GlobalNetworkSet", None, "cli-held")
    document = {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet", "metadata": {"name": "cli-held"}}
    _database(fresh_database_url, lambda conn: put(conn, {key: document}))

    result = _invoke("--dry-run", "--kubeconfig", kubeconfig, "--database-url", fresh_database_url)

    assert result.exit_code == 0, result.output
    assert result.output.startswith("sync read-only with")
    assert "2 import, 1 hold" in result.output.splitlines()[0]  # the namespaces come in
    (held,) = [line.split() for line in result.output.splitlines() if line.startswith("  hold ")]
    assert held[1:3] == ["GlobalNetworkSet", "cli-held"]
    assert " ".join(held[3:]) == "new in Ringfence; not written back (apply held)"
    assert "# held changes are written back with --read-write" in result.output
    assert "# would apply" not in result.output


def test_without_a_database_the_command_says_so(cluster, tmp_path, monkeypatch):
    monkeypatch.delenv("RINGFENCE_DATABASE_URL", raising=False)
    result = CliRunner().invoke(sync, ["--dry-run", "--kubeconfig", str(cluster.write_kubeconfig(tmp_path / "k"))])
    assert result.exit_code == 2
    assert "RINGFENCE_DATABASE_URL" in result.output


def test_an_unreachable_cluster_is_reported(cluster, tmp_path):
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    text = kubeconfig.read_text().replace(cluster.url, "http://127.0.0.1:9")  # nothing listens on port 9
    kubeconfig.write_text(text)
    result = CliRunner().invoke(
        sync, ["--dry-run", "--kubeconfig", str(kubeconfig), "--database-url", "postgresql://127.0.0.1:1/x"]
    )
    assert result.exit_code == 1
    assert "cannot use the Kubernetes API at http://127.0.0.1:9" in result.output


def test_a_calico_api_the_cluster_lacks_is_refused(cluster, tmp_path):
    kubeconfig = str(cluster.write_kubeconfig(tmp_path / "kubeconfig"))
    result = CliRunner().invoke(
        sync,
        [
            "--dry-run",
            "--calico-api",
            "crd.projectcalico.org/v1",
            "--kubeconfig",
            kubeconfig,
            "--database-url",
            "postgresql://x/y",
        ],
    )
    assert result.exit_code == 1
    assert "does not serve crd.projectcalico.org/v1" in result.output
