"""The double's storage: objects, one cluster-wide resourceVersion counter and the event history.

Thread-safe: the HTTP handlers run on the server's event loop while tests seed and change objects
from their own thread. Every write takes the next resourceVersion and appends an event, which the
watch streams read; :meth:`ClusterState.compact` forgets the history, so a watch from an older
version gets 410 Gone, as after etcd compaction.
"""

from __future__ import annotations

import copy
import itertools
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from k8s_double import fields
from k8s_double.resources import ResourceType

ObjectId = tuple[ResourceType, str, str]  # type, namespace ("" when cluster-scoped), name


class ApiError(Exception):
    """An error the API answers with a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def gone(resource_version: int, oldest: int) -> ApiError:
    return ApiError(410, "Expired", f"too old resource version: {resource_version} ({oldest})")


@dataclass(slots=True)
class Stored:
    obj: dict[str, Any]  # without resourceVersion and managedFields
    managers: dict[str, fields.Managed]
    resource_version: int


@dataclass(frozen=True, slots=True)
class Event:
    resource_version: int
    type: str  # ADDED, MODIFIED, DELETED
    object_id: ObjectId
    obj: dict[str, Any]  # rendered


@dataclass(slots=True)
class _Listeners:
    callbacks: dict[int, Callable[[], None]] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=itertools.count)


_SERVER_METADATA: Final = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink")


class ClusterState:
    """Objects of the served types, their versions and history."""

    def __init__(self, types: tuple[ResourceType, ...], *, first_version: int = 1000) -> None:
        self.types = types
        self._lock = threading.RLock()
        self._objects: dict[ObjectId, Stored] = {}
        self._events: list[Event] = []
        self._version = first_version
        self._compacted = 0
        self._listeners = _Listeners()
        self.drop_generation = 0
        self.drop_abruptly = True

    # --- reading ---------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._version

    def type_of(self, api_version: str, kind: str) -> ResourceType:
        for rtype in self.types:
            if rtype.api_version == api_version and rtype.kind == kind:
                return rtype
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({api_version} {kind})")

    def list(self, rtype: ResourceType, namespace: str | None) -> tuple[list[dict[str, Any]], int]:
        with self._lock:
            items = [
                self._render(object_id, stored)
                for object_id, stored in sorted(self._objects.items(), key=lambda item: item[0][1:])
                if object_id[0] == rtype and (namespace is None or object_id[1] == namespace)
            ]
            return items, self._version

    def get(self, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            stored = self._objects.get((rtype, namespace, name))
            if stored is None:
                raise _not_found(rtype, name)
            return self._render((rtype, namespace, name), stored)

    def events_after(
        self, rtype: ResourceType, namespace: str | None, resource_version: int
    ) -> tuple[list[Event], int]:
        """Events of ``rtype`` (in ``namespace``) newer than ``resource_version`` and the version read at.

        Raises 410 Gone when the history no longer reaches ``resource_version``.
        """
        with self._lock:
            if resource_version < self._compacted:
                raise gone(resource_version, self._compacted)
            return [
                event
                for event in self._events
                if event.resource_version > resource_version
                and event.object_id[0] == rtype
                and (namespace is None or event.object_id[1] == namespace)
            ], self._version

    # --- writing ---------------------------------------------------------------------------------

    def create(self, rtype: ResourceType, namespace: str, body: dict[str, Any], manager: str) -> dict[str, Any]:
        name = _name_of(rtype, namespace, body)
        with self._lock:
            self._require_namespace(rtype, namespace)
            object_id = (rtype, namespace, name)
            if object_id in self._objects:
                raise ApiError(409, "AlreadyExists", f'{rtype.plural} "{name}" already exists')
            obj = self._new_object(rtype, namespace, body)
            managers = fields.update(None, {}, obj, manager, now=_now())
            return self._store(object_id, obj, managers, "ADDED")

    def replace(
        self, rtype: ResourceType, namespace: str, name: str, body: dict[str, Any], manager: str
    ) -> dict[str, Any]:
        if _name_of(rtype, namespace, body) != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        with self._lock:
            stored = self._existing(rtype, namespace, name)
            _check_version(body, stored)
            obj = self._carry_server_fields(stored.obj, body)
            managers = fields.update(stored.obj, stored.managers, obj, manager, now=_now())
            return self._store((rtype, namespace, name), obj, managers, "MODIFIED", stored)

    def merge_patch(
        self, rtype: ResourceType, namespace: str, name: str, patch: dict[str, Any], manager: str
    ) -> dict[str, Any]:
        with self._lock:
            stored = self._existing(rtype, namespace, name)
            _check_version(patch, stored)
            merged = _merge(copy.deepcopy(stored.obj), patch)
            obj = self._carry_server_fields(stored.obj, merged)
            managers = fields.update(stored.obj, stored.managers, obj, manager, now=_now())
            return self._store((rtype, namespace, name), obj, managers, "MODIFIED", stored)

    def apply(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        body: dict[str, Any],
        manager: str,
        *,
        force: bool,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        if body.get("apiVersion") != rtype.api_version or body.get("kind") != rtype.kind:
            raise ApiError(
                400,
                "BadRequest",
                f"the body is {body.get('apiVersion')} {body.get('kind')}, the URL is {rtype.api_version} {rtype.kind}",
            )
        if _name_of(rtype, namespace, body) != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        with self._lock:
            object_id = (rtype, namespace, name)
            stored = self._objects.get(object_id)
            if stored is None:
                self._require_namespace(rtype, namespace)
                if (body.get("metadata") or {}).get("resourceVersion"):
                    raise _not_found(rtype, name)
            else:
                _check_version(body, stored)
            try:
                obj, managers = fields.apply(
                    None if stored is None else stored.obj,
                    {} if stored is None else stored.managers,
                    _without_server_metadata(body),
                    manager,
                    force=force,
                    now=_now(),
                )
            except fields.ApplyConflictError as error:
                causes = [
                    {"reason": "FieldManagerConflict", "message": f'conflict with "{owner}"', "field": ".".join(path)}
                    for owner, path in error.conflicts
                ]
                raise ApiError(409, "Conflict", str(error), causes=causes) from None
            if stored is None:
                obj = self._new_object(rtype, namespace, obj)
            else:
                obj = self._carry_server_fields(stored.obj, obj)
            if dry_run:
                return self._render(object_id, Stored(obj, managers, self._version))
            return self._store(object_id, obj, managers, "ADDED" if stored is None else "MODIFIED", stored)

    def delete(self, rtype: ResourceType, namespace: str, name: str, preconditions: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            object_id = (rtype, namespace, name)
            stored = self._existing(rtype, namespace, name)
            wanted = preconditions.get("resourceVersion")
            if wanted and str(wanted) != str(stored.resource_version):
                raise ApiError(
                    409,
                    "Conflict",
                    f"Precondition failed: ResourceVersion in precondition: {wanted}, "
                    f"ResourceVersion in object meta: {stored.resource_version}",
                )
            del self._objects[object_id]
            self._version += 1
            rendered = self._render(object_id, Stored(stored.obj, stored.managers, self._version))
            self._events.append(Event(self._version, "DELETED", object_id, rendered))
        self._notify()
        return rendered

    def compact(self) -> int:
        """Forget the history up to now: watches from older versions get 410 Gone."""
        with self._lock:
            self._version += 1  # a version the history no longer reaches
            self._compacted = self._version
            self._events.clear()
            return self._compacted

    # --- watch plumbing --------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[], None]) -> int:
        with self._lock:
            listener = next(self._listeners.ids)
            self._listeners.callbacks[listener] = callback
            return listener

    def unsubscribe(self, listener: int) -> None:
        with self._lock:
            self._listeners.callbacks.pop(listener, None)

    def drop_watches(self, *, abrupt: bool) -> None:
        """End every open watch stream: cut the connection (abrupt) or close the stream cleanly."""
        with self._lock:
            self.drop_abruptly = abrupt
            self.drop_generation += 1
        self._notify()

    def _notify(self) -> None:
        with self._lock:
            callbacks = list(self._listeners.callbacks.values())
        for callback in callbacks:
            callback()

    # --- helpers ---------------------------------------------------------------------------------

    def _existing(self, rtype: ResourceType, namespace: str, name: str) -> Stored:
        stored = self._objects.get((rtype, namespace, name))
        if stored is None:
            raise _not_found(rtype, name)
        return stored

    def _require_namespace(self, rtype: ResourceType, namespace: str) -> None:
        if not rtype.namespaced:
            return
        namespaces = next(t for t in self.types if t.plural == "namespaces" and t.group == "")
        if (namespaces, "", namespace) not in self._objects:
            raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found', kind="namespaces", name=namespace)

    def _new_object(self, rtype: ResourceType, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        obj = _without_server_metadata(body)
        obj["apiVersion"] = rtype.api_version
        obj["kind"] = rtype.kind
        metadata = obj.setdefault("metadata", {})
        if rtype.namespaced:
            metadata["namespace"] = namespace
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = _now()
        metadata["generation"] = 1
        return obj

    def _carry_server_fields(self, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        obj = _without_server_metadata(new)
        obj["apiVersion"], obj["kind"] = old["apiVersion"], old["kind"]
        metadata = obj.setdefault("metadata", {})
        for key in ("name", "namespace", "uid", "creationTimestamp"):
            if key in old["metadata"]:
                metadata[key] = old["metadata"][key]
        generation = old["metadata"].get("generation", 1)
        metadata["generation"] = generation + (1 if old.get("spec") != obj.get("spec") else 0)
        return obj

    def _store(
        self,
        object_id: ObjectId,
        obj: dict[str, Any],
        managers: dict[str, fields.Managed],
        event_type: str,
        before: Stored | None = None,
    ) -> dict[str, Any]:
        if before is not None and before.obj == obj and _same_paths(before.managers, managers):
            return self._render(object_id, before)  # a no-op write takes no new version
        self._version += 1
        stored = Stored(obj, managers, self._version)
        self._objects[object_id] = stored
        rendered = self._render(object_id, stored)
        self._events.append(Event(self._version, event_type, object_id, rendered))
        self._notify()
        return rendered

    def _render(self, object_id: ObjectId, stored: Stored) -> dict[str, Any]:
        rtype = object_id[0]
        obj = copy.deepcopy(stored.obj)
        obj["apiVersion"] = rtype.api_version
        obj["kind"] = rtype.kind
        metadata = obj.setdefault("metadata", {})
        metadata["resourceVersion"] = str(stored.resource_version)
        metadata["managedFields"] = [
            {
                "manager": manager,
                "operation": managed.operation,
                "apiVersion": rtype.api_version,
                "time": managed.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields.fields_v1(managed.paths),
            }
            for manager, managed in sorted(stored.managers.items())
        ]
        return obj


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _not_found(rtype: ResourceType, name: str) -> ApiError:
    group = f".{rtype.group}" if rtype.group else ""
    return ApiError(
        404, "NotFound", f'{rtype.plural}{group} "{name}" not found', name=name, group=rtype.group, kind=rtype.plural
    )


def _name_of(rtype: ResourceType, namespace: str, body: dict[str, Any]) -> str:
    metadata = body.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        raise ApiError(422, "Invalid", f"{rtype.kind} is invalid: metadata.name: Required value")
    given = metadata.get("namespace") if isinstance(metadata, dict) else None
    if rtype.namespaced and given not in {None, namespace}:
        raise ApiError(400, "BadRequest", "the namespace of the object does not match the namespace on the request")
    return name


def _check_version(body: dict[str, Any], stored: Stored) -> None:
    wanted = (body.get("metadata") or {}).get("resourceVersion")
    if wanted and str(wanted) != str(stored.resource_version):
        name = stored.obj["metadata"]["name"]
        raise ApiError(
            409,
            "Conflict",
            f"Operation cannot be fulfilled on {name}: the object has been modified; "
            "please apply your changes to the latest version and try again",
        )


def _without_server_metadata(body: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(body)
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        for key in _SERVER_METADATA:
            metadata.pop(key, None)
    obj.pop("status", None)
    return obj


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge(target.get(key), value)
    return target


def _same_paths(a: dict[str, fields.Managed], b: dict[str, fields.Managed]) -> bool:
    return {name: m.paths for name, m in a.items()} == {name: m.paths for name, m in b.items()}
