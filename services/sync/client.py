"""The cluster as the sync sees it: list, watch, get, server-side apply and delete, as plain JSON.

A thin layer over the official ``kubernetes`` client. Objects stay the JSON the API server sent
(``_preload_content=False``), never the client's typed models, so nothing the models do not know is
lost on the way through. Watch streams are read line by line here rather than with
``kubernetes.watch.Watch``, so that the caller decides how to resume, and a 410 Gone is an exception
(:class:`ResourceExpiredError`) rather than a silent retry.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from services.sync.kinds import ClusterKind

FIELD_MANAGER: Final = "ringfence"
APPLY_PATCH: Final = "application/apply-patch+yaml"
HTTP_NOT_FOUND: Final = 404
HTTP_CONFLICT: Final = 409
HTTP_GONE: Final = 410
# One long-lived watch connection per kind (12) plus lists and writes.
CONNECTION_POOL_SIZE: Final = 32

Document = dict[str, Any]


class ClusterError(Exception):
    """The API server refused a request; ``status`` is its HTTP code, ``reason`` the Status reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class ResourceExpiredError(ClusterError):
    """410 Gone: the resource version to watch from is older than the server's history."""


class ApplyConflictError(ClusterError):
    """409 Conflict on a write: the object changed since the version the write was based on."""


@dataclass(frozen=True, slots=True)
class ObjectList:
    """A list response: the items (apiVersion and kind filled in) and the list's resourceVersion."""

    items: list[Document]
    resource_version: str


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One watch event: ADDED, MODIFIED, DELETED or BOOKMARK, and the object (or the bookmark's)."""

    type: str
    object: Document

    @property
    def resource_version(self) -> str | None:
        version = (self.object.get("metadata") or {}).get("resourceVersion")
        return str(version) if version else None


def load_api_client(kubeconfig: Path | None = None, context: str | None = None) -> kubernetes.client.ApiClient:
    """A client for ``kubeconfig`` (and ``context``), else the in-cluster service account, else ~/.kube/config."""
    configuration = kubernetes.client.Configuration()
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    if kubeconfig is not None or context is not None:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=None if kubeconfig is None else str(kubeconfig),
            context=context,
            client_configuration=configuration,
        )
    else:
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return kubernetes.client.ApiClient(configuration)


class ClusterClient:
    """List, watch, get, apply and delete cluster objects of the kinds in :mod:`services.sync.kinds`.

    Every running watch holds a connection: give the client's configuration a
    ``connection_pool_maxsize`` of :data:`CONNECTION_POOL_SIZE` (:func:`load_api_client` does).
    """

    def __init__(self, api_client: kubernetes.client.ApiClient, *, field_manager: str = FIELD_MANAGER) -> None:
        self.api_client = api_client
        self.field_manager = field_manager
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._custom = kubernetes.client.CustomObjectsApi(api_client)
        self._apis = kubernetes.client.ApisApi(api_client)

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]

    # --- discovery -------------------------------------------------------------------------------

    def served_api_versions(self) -> set[str]:
        """The group versions the server serves (``v1`` included), from discovery."""
        response = _call(self._apis.get_api_versions, _preload_content=False)
        groups = json.loads(response.data).get("groups") or []
        versions = {"v1"}
        for group in groups:
            versions.update(version["groupVersion"] for version in group.get("versions") or [])
        return versions

    # --- reads -----------------------------------------------------------------------------------

    def list(self, kind: ClusterKind, *, request_timeout: float | None = None) -> ObjectList:
        """Every object of ``kind`` (across namespaces) and the version to watch from."""
        response = self._list_call(kind, {"_request_timeout": request_timeout})
        body = json.loads(response.data)
        items = [_complete(kind, item) for item in body.get("items") or []]
        return ObjectList(items, str((body.get("metadata") or {}).get("resourceVersion") or ""))

    def watch(
        self,
        kind: ClusterKind,
        resource_version: str,
        *,
        timeout_seconds: int,
        request_timeout: float | None = None,
        on_response: Any = None,
    ) -> Iterator[WatchEvent]:
        """The events after ``resource_version`` until the server ends the stream.

        Raises :class:`ResourceExpiredError` when the version is too old (410 Gone), and urllib3's
        errors or ``OSError`` when the connection breaks; both end the iteration. ``on_response`` is
        called with the open response so that another thread can cut it short.
        """
        arguments: dict[str, Any] = {
            "watch": True,
            "resource_version": resource_version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": timeout_seconds,
            "_request_timeout": request_timeout,
        }
        response = self._list_call(kind, arguments)
        if on_response is not None:
            on_response(response)
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if not line.strip():
                    continue
                event = json.loads(line)
                event_type = event.get("type")
                obj = event.get("object") or {}
                if event_type == "ERROR":
                    raise _status_error(obj)
                yield WatchEvent(event_type, obj if event_type == "BOOKMARK" else _complete(kind, obj))
        finally:
            response.release_conn()

    def get(self, kind: ClusterKind, namespace: str | None, name: str) -> Document | None:
        """One object, or None when it does not exist."""
        try:
            if kind.group == "" and kind.plural == "namespaces":
                response = _call(self._core.read_namespace, name, _preload_content=False)
            elif kind.group == "":
                raise ValueError(f"reading one {kind.kind} is not supported")
            elif kind.namespaced:
                response = _call(
                    self._custom.get_namespaced_custom_object,
                    kind.group,
                    kind.version,
                    namespace or "default",
                    kind.plural,
                    name,
                    _preload_content=False,
                )
            else:
                response = _call(
                    self._custom.get_cluster_custom_object,
                    kind.group,
                    kind.version,
                    kind.plural,
                    name,
                    _preload_content=False,
                )
        except ClusterError as error:
            if error.status == HTTP_NOT_FOUND:
                return None
            raise
        return _complete(kind, json.loads(response.data))

    # --- writes ----------------------------------------------------------------------------------

    def apply(self, kind: ClusterKind, body: Document, *, force: bool = True, dry_run: bool = False) -> Document:
        """Server-side apply ``body`` as this client's field manager; the object as the server now has it.

        A ``metadata.resourceVersion`` in ``body`` makes the apply conditional on it: the server answers
        409 (:class:`ApplyConflictError`) when the object changed since.
        """
        if kind.group == "":
            raise ValueError(f"{kind.kind} objects are never written by the sync")
        metadata = body["metadata"]
        options: dict[str, Any] = {
            "field_manager": self.field_manager,
            "force": force,
            "_content_type": APPLY_PATCH,
            "_preload_content": False,
        }
        if dry_run:
            options["dry_run"] = "All"
        if kind.namespaced:
            response = _call(
                self._custom.patch_namespaced_custom_object,
                kind.group,
                kind.version,
                metadata["namespace"],
                kind.plural,
                metadata["name"],
                body,
                **options,
            )
        else:
            response = _call(
                self._custom.patch_cluster_custom_object,
                kind.group,
                kind.version,
                kind.plural,
                metadata["name"],
                body,
                **options,
            )
        return _complete(kind, json.loads(response.data))

    def delete(self, kind: ClusterKind, namespace: str | None, name: str, *, resource_version: str | None) -> bool:
        """Delete one object if it is still at ``resource_version``; False when it was already gone."""
        if kind.group == "":
            raise ValueError(f"{kind.kind} objects are never deleted by the sync")
        options = kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(resource_version=resource_version)
            if resource_version
            else None
        )
        try:
            if kind.namespaced:
                _call(
                    self._custom.delete_namespaced_custom_object,
                    kind.group,
                    kind.version,
                    namespace or "default",
                    kind.plural,
                    name,
                    body=options,
                    _preload_content=False,
                )
            else:
                _call(
                    self._custom.delete_cluster_custom_object,
                    kind.group,
                    kind.version,
                    kind.plural,
                    name,
                    body=options,
                    _preload_content=False,
                )
        except ClusterError as error:
            if error.status == HTTP_NOT_FOUND:
                return False
            raise
        return True

    # --- plumbing --------------------------------------------------------------------------------

    def _list_call(self, kind: ClusterKind, arguments: dict[str, Any]) -> Any:  # urllib3's streaming response
        arguments = {key: value for key, value in arguments.items() if value is not None}
        arguments["_preload_content"] = False
        if kind.group == "":
            method = {
                "namespaces": self._core.list_namespace,
                "pods": self._core.list_pod_for_all_namespaces,
                "services": self._core.list_service_for_all_namespaces,
            }[kind.plural]
            return _call(method, **arguments)
        return _call(self._custom.list_cluster_custom_object, kind.group, kind.version, kind.plural, **arguments)


def cut(response: urllib3.BaseHTTPResponse) -> None:
    """Shut the socket under an open streaming response, so that a thread blocked reading it wakes up."""
    connection = getattr(response, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _call(method: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return method(*args, **kwargs)
    except ApiException as error:
        raise _api_error(error) from None


def _api_error(error: ApiException) -> ClusterError:
    body: Any = None
    if error.body:
        try:
            body = json.loads(error.body)
        except (TypeError, ValueError):
            body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return _status_error(body)
    status = int(error.status or 0)
    return _error_class(status)(status, str(error.reason or ""), f"{status} {error.reason}: {error.body or ''}".strip())


def _status_error(status: Document) -> ClusterError:
    code = int(status.get("code") or 0)
    return _error_class(code)(code, str(status.get("reason") or ""), str(status.get("message") or f"HTTP {code}"))


def _error_class(status: int) -> type[ClusterError]:
    if status == HTTP_GONE:
        return ResourceExpiredError
    if status == HTTP_CONFLICT:
        return ApplyConflictError
    return ClusterError


def _complete(kind: ClusterKind, obj: Document) -> Document:
    """Built-in list items come without apiVersion and kind; put them back."""
    if "apiVersion" not in obj or "kind" not in obj:
        obj = {"apiVersion": kind.api_version, "kind": kind.kind, **obj}
    return obj
