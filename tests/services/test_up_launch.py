"""What `ringfence up` runs: its children, and whether the cluster sync is among them."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.settings import Settings
from services.up.launch import UpOptions, child_specs, cluster_config_present


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def write_kubeconfig(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("apiVersion: v1\nkind: Config\n")
    return path


def test_no_cluster_configured(home: Path) -> None:
    assert not cluster_config_present({}, home)


def test_in_cluster_service_account(home: Path) -> None:
    assert cluster_config_present({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, home)


def test_default_kubeconfig_in_home(home: Path) -> None:
    write_kubeconfig(home / ".kube" / "config")
    assert cluster_config_present({}, home)


def test_kubeconfig_variable_names_files_that_must_exist(home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert not cluster_config_present({"KUBECONFIG": str(missing)}, home)
    present = write_kubeconfig(tmp_path / "kind.yaml")
    assert cluster_config_present({"KUBECONFIG": f"{missing}:{present}"}, home)


def test_kubeconfig_variable_wins_over_home(home: Path, tmp_path: Path) -> None:
    # kubectl reads only $KUBECONFIG when it is set: a config in the home folder is then not used.
    write_kubeconfig(home / ".kube" / "config")
    assert not cluster_config_present({"KUBECONFIG": str(tmp_path / "missing")}, home)


@pytest.mark.parametrize(
    ("sync", "expected"), [(False, {"api", "worker", "collector"}), (True, {"api", "worker", "collector", "sync"})]
)
def test_children_include_a_read_only_sync_only_when_asked(tmp_path: Path, sync: bool, expected: set[str]) -> None:
    settings = Settings.from_env({"RINGFENCE_DATABASE_URL": "postgresql://db/x", "RINGFENCE_REDIS_URL": "redis://r/0"})
    options = UpOptions(host="127.0.0.1", port=8080, demo=False, sync=sync)
    specs = {spec.name: spec for spec in child_specs(settings, tmp_path, options)}
    assert set(specs) == expected
    if sync:
        assert list(specs["sync"].argv[-3:]) == ["services", "sync", "--read-only"]
        assert specs["sync"].env is not None
        assert specs["sync"].env["RINGFENCE_DATABASE_URL"] == "postgresql://db/x"
