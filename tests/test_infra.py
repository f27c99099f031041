"""The Kubernetes manifests in infra/: they render, validate against the Kubernetes schemas, and hang together.

The base is plain YAML (the files its kustomization lists), read here without any tool. Overlays are
rendered with ``kubectl kustomize`` when kubectl is installed. Schemas come from the
``kubernetes-validate`` package (strict: unknown fields are errors), for the oldest and the newest
Kubernetes release we support.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from services.cli import main
from services.sync.kinds import CALICO_API_SERVER, CALICO_CRDS, KUBERNETES_KINDS, calico_kinds

REPOSITORY = Path(__file__).resolve().parents[1]
KUSTOMIZE = REPOSITORY / "infra" / "kustomize"
BASE = KUSTOMIZE / "base"
OVERLAYS = sorted(path.name for path in (KUSTOMIZE / "overlays").iterdir() if path.is_dir())
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")
NAMESPACE = "ringfence"
SECRET = "ringfence-secrets"
WORKLOAD_KINDS = frozenset({"Deployment", "DaemonSet", "StatefulSet", "Job"})
READ_VERBS = frozenset({"get", "list", "watch"})
SYNC_SERVICE_ACCOUNT = "ringfence-sync"

# Where each command of the images' `ringfence` entry point lives, for commands not yet registered
# in services.commands (the `ringfence` group finds the registered ones itself).
COMMAND_MODULES = {
    "api": ("services.api.cli", "api"),
    "worker": ("services.worker.cli", "worker"),
    "collector": ("services.collector.cli", "collector_command"),
    "migrate": ("services.commands.migrate", "command"),
    "sync": ("services.sync.cli", "sync"),
}

Document = dict[str, Any]


def render_base() -> list[Document]:
    """The base's documents: every file its kustomization lists, in order."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    documents: list[Document] = []
    for name in kustomization["resources"]:
        documents.extend(document for document in yaml.safe_load_all((BASE / name).read_text()) if document)
    return documents


def render_kustomize(path: Path) -> list[Document]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: overlays are rendered with `kubectl kustomize`")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, check=False, timeout=120
    )
    assert rendered.returncode == 0, rendered.stderr
    return [document for document in yaml.safe_load_all(rendered.stdout) if document]


def _of_kind(documents: list[Document], kind: str) -> list[Document]:
    return [document for document in documents if document["kind"] == kind]


def _workloads(documents: list[Document]) -> list[Document]:
    return [document for document in documents if document["kind"] in WORKLOAD_KINDS]


def _pod_spec(workload: Document) -> Document:
    pod_spec: Document = workload["spec"]["template"]["spec"]
    return pod_spec


def _containers(documents: list[Document]) -> Iterator[tuple[Document, Document]]:
    for workload in _workloads(documents):
        for container in _pod_spec(workload)["containers"]:
            yield workload, container


def _name(document: Document) -> str:
    return f"{document['kind']}/{document['metadata']['name']}"


# --- schemas ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_base_validates_against_the_kubernetes_schemas(version):
    validate = pytest.importorskip("kubernetes_validate", reason="needs the kubernetes-validate package").validate
    documents = render_base()
    assert documents
    for document in documents:
        validate(document, version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_and_validates(overlay):
    validate = pytest.importorskip("kubernetes_validate", reason="needs the kubernetes-validate package").validate
    documents = render_kustomize(KUSTOMIZE / "overlays" / overlay)
    for document in documents:
        for version in KUBERNETES_VERSIONS:
            validate(document, version, strict=True)


def test_kustomize_renders_the_base_as_the_plain_files_say():
    rendered = render_kustomize(BASE)
    plain = render_base()
    assert sorted(map(_name, rendered)) == sorted(map(_name, plain))


def test_a_broken_manifest_fails_validation():
    validate = pytest.importorskip("kubernetes_validate", reason="needs the kubernetes-validate package").validate
    errors = pytest.importorskip("kubernetes_validate").ValidationError
    (api,) = [d for d in render_base() if _name(d) == "Deployment/ringfence-api"]
    api["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/healthz"
    with pytest.raises(errors):
        validate(api, KUBERNETES_VERSIONS[-1], strict=True)


# --- consistency -------------------------------------------------------------------------------------


def test_everything_namespaced_lives_in_the_ringfence_namespace():
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == NAMESPACE
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for document in render_base():
        if document["kind"] not in cluster_scoped:
            assert document["metadata"].get("namespace") == NAMESPACE, _name(document)


def test_http_components_are_probed_on_healthz_and_readyz():
    probed = set()
    for workload, container in _containers(render_base()):
        ports = {port["name"] for port in container.get("ports", [])}
        if not ports:
            continue
        probed.add(workload["metadata"]["name"])
        liveness = container["livenessProbe"]["httpGet"]
        readiness = container["readinessProbe"]["httpGet"]
        assert (liveness["path"], readiness["path"]) == ("/healthz", "/readyz"), _name(workload)
        assert {liveness["port"], readiness["port"]} <= ports, _name(workload)
    assert probed == {"ringfence-api", "ringfence-collector", "ringfence-sync"}


def test_workers_are_probed_on_the_file_their_loop_touches():
    probed = set()
    for workload, container in _containers(render_base()):
        name, *arguments = container["args"]
        if name != "worker":
            continue
        probed.add(workload["metadata"]["name"])
        alive = arguments[arguments.index("--alive-file") + 1]
        command = container["livenessProbe"]["exec"]["command"]
        assert command[:2] == ["sh", "-c"], _name(workload)
        assert f"stat -c %Y {alive}" in command[2], _name(workload)
        assert alive.startswith("/tmp/"), _name(workload)  # the one writable mount (read-only root file system)
        if "--beat" in arguments:  # the scheduler's own file, touched on each tick
            assert f"stat -c %Y {alive}.beat" in command[2], _name(workload)
    assert probed == {"ringfence-worker", "ringfence-beat"}


def test_every_container_requests_resources_and_limits_memory():
    for workload, container in _containers(render_base()):
        resources = container["resources"]
        assert set(resources["requests"]) == {"cpu", "memory"}, _name(workload)
        assert "memory" in resources["limits"], _name(workload)


def test_containers_are_locked_down():
    for workload, container in _containers(render_base()):
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, _name(workload)
        assert security["readOnlyRootFilesystem"] is True, _name(workload)
        assert security["capabilities"]["drop"] == ["ALL"], _name(workload)
        if workload["metadata"]["name"] != "ringfence-collector":  # it reads a root-only host file
            assert _pod_spec(workload)["securityContext"]["runAsNonRoot"] is True, _name(workload)


def test_configuration_comes_from_the_config_map_and_the_secret():
    documents = render_base()
    config_maps = {document["metadata"]["name"] for document in _of_kind(documents, "ConfigMap")}
    for workload, container in _containers(documents):
        sources = container["envFrom"]
        assert {source["configMapRef"]["name"] for source in sources if "configMapRef" in source} <= config_maps
        assert [source["secretRef"]["name"] for source in sources if "secretRef" in source] == [SECRET], _name(workload)
    documented = (REPOSITORY / "README.md").read_text()
    assert f"create secret generic {SECRET}" in documented
    for key in yaml.safe_load((BASE / "config.yaml").read_text())["data"]:
        assert key in documented, f"{key} is not documented in README.md"


def test_selectors_find_their_pods():
    documents = render_base()
    templates = {
        workload["metadata"]["name"]: workload["spec"]["template"]["metadata"]["labels"]
        for workload in _workloads(documents)
    }

    def matching(selector: dict[str, str]) -> list[str]:
        return [name for name, labels in templates.items() if selector.items() <= labels.items()]

    for workload in _workloads(documents):
        if workload["kind"] != "Job":
            assert matching(workload["spec"]["selector"]["matchLabels"]) == [workload["metadata"]["name"]]
    for service in _of_kind(documents, "Service"):
        assert len(matching(service["spec"]["selector"])) == 1, _name(service)
    budgets = _of_kind(documents, "PodDisruptionBudget")
    assert {matching(budget["spec"]["selector"]["matchLabels"])[0] for budget in budgets} == {
        "ringfence-api",
        "ringfence-worker",
    }


def test_the_collector_runs_on_every_node_and_reads_the_flow_logs_read_only():
    (collector,) = [d for d in render_base() if _name(d) == "DaemonSet/ringfence-collector"]
    spec = _pod_spec(collector)
    assert {"operator": "Exists"} in spec["tolerations"]
    (volume,) = [v for v in spec["volumes"] if "hostPath" in v]
    assert volume["hostPath"]["path"] == "/var/log/calico/flowlogs"
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    args = spec["containers"][0]["args"]
    assert args[args.index("--file") + 1].startswith(mount["mountPath"] + "/")


def test_single_writers_never_overlap():
    documents = render_base()
    for name in ("ringfence-sync", "ringfence-beat"):
        (deployment,) = [d for d in documents if _name(d) == f"Deployment/{name}"]
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}


# --- the commands the images run ----------------------------------------------------------------------


def _command(name: str) -> click.Command:
    with click.Context(main) as context:
        registered = main.get_command(context, name)
    if registered is not None:
        return registered
    module, attribute = COMMAND_MODULES[name]
    command = getattr(importlib.import_module(module), attribute)
    assert isinstance(command, click.Command)
    return command


@pytest.mark.parametrize("source", ["base", *OVERLAYS])
def test_containers_run_commands_the_cli_accepts(source):
    documents = render_base() if source == "base" else render_kustomize(KUSTOMIZE / "overlays" / source)
    for workload, container in _containers(documents):
        name, *arguments = container["args"]
        command = _command(name)
        with command.make_context(name, list(arguments)) as context:  # raises on an unknown option or bad value
            assert context.command is command, _name(workload)


# --- RBAC ---------------------------------------------------------------------------------------------


def _grants(documents: list[Document], subject: str) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs granted to the ServiceAccount ``subject``."""
    roles = {(d["kind"], d["metadata"]["name"]): d for d in documents if d["kind"] in {"ClusterRole", "Role"}}
    grants: dict[tuple[str, str], set[str]] = {}
    for binding in documents:
        if binding["kind"] not in {"ClusterRoleBinding", "RoleBinding"}:
            continue
        if not any(s["kind"] == "ServiceAccount" and s["name"] == subject for s in binding["subjects"]):
            continue
        role = roles[binding["roleRef"]["kind"], binding["roleRef"]["name"]]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    grants.setdefault((group, resource), set()).update(rule["verbs"])
    return grants


def test_only_the_sync_may_use_the_kubernetes_api():
    documents = render_base()
    for account in _of_kind(documents, "ServiceAccount"):
        name = account["metadata"]["name"]
        assert account.get("automountServiceAccountToken", True) is (name == SYNC_SERVICE_ACCOUNT), name
    for binding in documents:
        if binding["kind"] in {"ClusterRoleBinding", "RoleBinding"}:
            assert [s["name"] for s in binding["subjects"]] == [SYNC_SERVICE_ACCOUNT]


def test_the_sync_may_read_everything_it_watches_and_write_nothing_in_the_base():
    grants = _grants(render_base(), SYNC_SERVICE_ACCOUNT)
    watched = KUBERNETES_KINDS + calico_kinds(CALICO_API_SERVER) + calico_kinds(CALICO_CRDS)
    for kind in watched:
        assert grants.get((kind.group, kind.plural)) == READ_VERBS, str(kind)
    assert all(verbs == READ_VERBS for verbs in grants.values())
    assert ("", "secrets") not in grants


def test_the_read_write_overlay_adds_write_verbs_on_written_kinds_only():
    documents = render_kustomize(KUSTOMIZE / "overlays" / "read-write")
    grants = _grants(documents, SYNC_SERVICE_ACCOUNT)
    writable = {
        (kind.group, kind.plural) for kind in KUBERNETES_KINDS + calico_kinds(CALICO_API_SERVER) if kind.writable
    }
    written = {resource for resource, verbs in grants.items() if verbs - READ_VERBS}
    assert {r for r in written if not r[1].startswith("tier.")} == writable
    for resource in writable:
        assert grants[resource] == READ_VERBS | {"create", "patch", "delete"}
    (sync,) = [d for d in documents if _name(d) == "Deployment/ringfence-sync"]
    assert "--read-write" in _pod_spec(sync)["containers"][0]["args"]
