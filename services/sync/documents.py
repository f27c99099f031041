"""Cluster objects to Ringfence documents and back.

Both sides are compared as *canonical documents*: the calicoctl-style document Ringfence stores
(decoded and encoded again by :mod:`ringfence.manifests`, so equivalent spellings compare equal),
without what the server manages (resourceVersion, uid, creation time, managedFields, status) and
without annotations that only record how an object was written.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Final

from ringfence.manifests import ManifestError, resource_from_dict, resource_to_dict
from ringfence.model import Resource, ResourceKey, resource_key
from services.sync.kinds import ClusterKind

Document = dict[str, Any]

# Annotations that say how an object was last written, not what it is.
WRITER_ANNOTATIONS: Final = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})


class InvalidObjectError(ValueError):
    """A cluster object Ringfence cannot read (it fails Ringfence's validation)."""


@dataclass(frozen=True, slots=True)
class ClusterObject:
    """A cluster object read by the sync: its kind, Ringfence key, canonical document and version."""

    kind: ClusterKind
    key: ResourceKey
    document: Document
    resource_version: str
    namespace: str | None  # as the API addresses it
    name: str


def canonical(document: Document) -> Document:
    """The canonical form of a Ringfence document (raises ``ManifestError`` when it is invalid)."""
    return resource_to_dict(_storable(resource_from_dict(document)))


def from_cluster(kind: ClusterKind, obj: Document) -> ClusterObject:
    """Read one cluster object of a Ringfence kind; :class:`InvalidObjectError` when it is not valid."""
    metadata = obj.get("metadata") or {}
    name = str(metadata.get("name") or "")
    namespace = metadata.get("namespace") if kind.namespaced else None
    document = copy.deepcopy(obj)
    document.pop("status", None)
    annotations = (document.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        for annotation in WRITER_ANNOTATIONS:
            annotations.pop(annotation, None)
    try:
        resource = resource_from_dict(document)
    except ManifestError as error:
        where = f"{namespace}/" if namespace else ""
        raise InvalidObjectError(f"{kind.kind} {where}{name}: {error}") from None
    return ClusterObject(
        kind=kind,
        key=resource_key(resource),
        document=resource_to_dict(_storable(resource)),
        resource_version=str(metadata.get("resourceVersion") or ""),
        namespace=namespace,
        name=name,
    )


def apply_body(kind: ClusterKind, document: Document, *, resource_version: str | None) -> Document:
    """The server-side apply body that makes the cluster object of ``kind`` hold ``document``.

    With ``resource_version`` the apply only succeeds if the object is still at that version.
    """
    body = copy.deepcopy(document)
    body["apiVersion"] = kind.api_version
    body["kind"] = kind.kind
    metadata = body.setdefault("metadata", {})
    for server_field in ("resourceVersion", "uid", "creationTimestamp"):
        metadata.pop(server_field, None)
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return body


def _storable(resource: Resource) -> Resource:
    metadata = dataclasses.replace(resource.metadata, resource_version=None, uid=None, creation_timestamp=None)
    return dataclasses.replace(resource, metadata=metadata)
