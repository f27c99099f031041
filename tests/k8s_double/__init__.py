"""An in-process Kubernetes API double that speaks the real REST and watch protocol.

It serves namespaces, pods, services, ``networking.k8s.io/v1`` NetworkPolicies and the Calico resources
(``projectcalico.org/v3`` as the Calico API server does, or ``crd.projectcalico.org/v1`` as the CRDs)
on 127.0.0.1, on an ephemeral port, from a uvicorn server in a thread. Drive it with the real
``kubernetes`` client::

    with KubernetesDouble() as cluster:
        api = kubernetes.client.CoreV1Api(cluster.api_client())
        cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "storefront"}})

Tests change the cluster behind the client's back with :meth:`create`, :meth:`update`, :meth:`apply`
and :meth:`delete` (as another field manager would), cut watch streams with :meth:`drop_watches` and
forget history with :meth:`compact` (watches from before it get 410 Gone).
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import kubernetes
import uvicorn
import yaml

from k8s_double.app import RequestLog, build_app
from k8s_double.resources import CALICO_API_SERVER, CALICO_CRDS, CORE, ResourceType, calico
from k8s_double.state import ApiError, ClusterState

__all__ = ["CALICO_API_SERVER", "CALICO_CRDS", "ApiError", "KubernetesDouble", "ResourceType"]


class KubernetesDouble:
    """A Kubernetes API server double; a context manager that starts and stops it."""

    def __init__(
        self,
        *,
        calico_api_versions: tuple[str, ...] = (CALICO_API_SERVER,),
        bookmark_interval: float = 0.5,
    ) -> None:
        types = CORE + tuple(rtype for api_version in calico_api_versions for rtype in calico(api_version))
        self.state = ClusterState(types)
        self.requests = RequestLog([])
        app = build_app(self.state, self.requests, bookmark_interval=bookmark_interval)
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="k8s-double", daemon=True)
        self.url = ""

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Kubernetes API double did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self.state.drop_watches(abrupt=False)
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- clients ---------------------------------------------------------------------------------

    def configuration(self) -> kubernetes.client.Configuration:
        """A client configuration pointing at the double."""
        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        configuration.connection_pool_maxsize = 32  # one connection per open watch
        return configuration

    def api_client(self) -> kubernetes.client.ApiClient:
        return kubernetes.client.ApiClient(self.configuration())

    def write_kubeconfig(self, path: Path, *, context: str = "double") -> Path:
        """A kubeconfig file whose current context is the double (for ``--kubeconfig``)."""
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": "double-token"}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(document))
        return path

    # --- changing the cluster behind the client's back -------------------------------------------

    def create(self, obj: dict[str, Any], *, manager: str = "kubectl-create") -> dict[str, Any]:
        rtype, namespace = self._locate(obj)
        return self.state.create(rtype, namespace, copy.deepcopy(obj), manager)

    def update(self, obj: dict[str, Any], *, manager: str = "kubectl-edit") -> dict[str, Any]:
        """Replace an object (as ``kubectl edit`` does); ``metadata.resourceVersion`` is checked if given."""
        rtype, namespace = self._locate(obj)
        return self.state.replace(rtype, namespace, obj["metadata"]["name"], copy.deepcopy(obj), manager)

    def patch(self, obj: dict[str, Any], patch: dict[str, Any], *, manager: str = "kubectl-patch") -> dict[str, Any]:
        """JSON-merge-patch the object ``obj`` names."""
        rtype, namespace = self._locate(obj)
        return self.state.merge_patch(rtype, namespace, obj["metadata"]["name"], copy.deepcopy(patch), manager)

    def apply(self, obj: dict[str, Any], *, manager: str = "kubectl", force: bool = False) -> dict[str, Any]:
        rtype, namespace = self._locate(obj)
        name = obj["metadata"]["name"]
        return self.state.apply(rtype, namespace, name, copy.deepcopy(obj), manager, force=force)

    def delete(self, obj: dict[str, Any]) -> dict[str, Any]:
        rtype, namespace = self._locate(obj)
        return self.state.delete(rtype, namespace, obj["metadata"]["name"], {})

    def get(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        rtype, namespace = self._locate(obj)
        try:
            return self.state.get(rtype, namespace, obj["metadata"]["name"])
        except ApiError as error:
            if error.code == 404:
                return None
            raise

    def objects(self, api_version: str, kind: str) -> list[dict[str, Any]]:
        """Every object of one type, as a list would return them (with apiVersion and kind)."""
        items, _ = self.state.list(self.state.type_of(api_version, kind), None)
        return items

    def drop_watches(self, *, abrupt: bool = True) -> None:
        """End the open watch streams: cut the connection mid-stream (abrupt) or close it cleanly."""
        self.state.drop_watches(abrupt=abrupt)

    def compact(self) -> int:
        """Forget the event history, as etcd compaction does; older watches get 410 Gone."""
        return self.state.compact()

    def _locate(self, obj: dict[str, Any]) -> tuple[ResourceType, str]:
        rtype = self.state.type_of(obj["apiVersion"], obj["kind"])
        namespace = obj["metadata"].get("namespace", "default") if rtype.namespaced else ""
        return rtype, namespace
