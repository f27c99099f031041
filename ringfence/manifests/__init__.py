"""calicoctl-compatible manifests: YAML or JSON text to model resources and back.

>>> resources = load_manifests('''
... apiVersion: projectcalico.org/v3
... kind: Tier
... metadata: {name: security}
... spec: {order: 100, defaultAction: Pass}
... ''')
>>> resources[0].order, resources[0].default_action.value
(100.0, 'Pass')
>>> print(dump_manifests(resources), end="")
apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: security
spec:
  order: 100
  defaultAction: Pass

Reads ``projectcalico.org/v3`` (and ``crd.projectcalico.org/v1``) Calico resources, Kubernetes
``networking.k8s.io/v1`` NetworkPolicy and ``v1`` Namespace, in multi-document YAML, JSON, or
``kind: List``. Every document is validated as Calico and Kubernetes validate it; any problem
rejects the whole batch with a ``ManifestError`` listing each one by document, resource and field.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import yaml

try:
    from yaml import CSafeDumper as _SafeDumper
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeDumper as _SafeDumper  # type: ignore[assignment]

from ringfence.manifests.decode import decode_document
from ringfence.manifests.encode import encode_resource
from ringfence.manifests.errors import ManifestError, ManifestIssue
from ringfence.manifests.reading import RawDocument, read_documents
from ringfence.model import Resource, ResourceKey, resource_key

__all__ = [
    "ManifestError",
    "ManifestIssue",
    "dump_manifests",
    "load_manifests",
    "resource_from_dict",
    "resource_to_dict",
]

_LINE_WIDTH: Final = 4096  # never fold a long selector over several lines


def load_manifests(text: str) -> list[Resource]:
    """Parse and validate ``text``; return its resources in order or raise ``ManifestError``.

    Namespaced resources without a namespace land in ``default``; two documents naming the same
    resource (policy names compared tier-qualified) are an error, as is any invalid document.
    """
    documents, issues = read_documents(text)
    resources: list[Resource] = []
    seen: dict[ResourceKey, RawDocument] = {}
    for raw in documents:
        resource, problems = decode_document(raw)
        issues.extend(problems)
        if resource is None:
            continue
        key = resource_key(resource)
        first = seen.setdefault(key, raw)
        if first is not raw:
            where = f"document {first.document}" + (f" {first.prefix}" if first.prefix else "")
            issues.append(
                ManifestIssue(
                    document=raw.document,
                    message=f"{key} is already defined by {where}",
                    path=f"{raw.prefix}.metadata.name" if raw.prefix else "metadata.name",
                    kind=resource.kind,
                    namespace=key.namespace,
                    name=resource.metadata.name,
                )
            )
        resources.append(resource)
    if issues:
        raise ManifestError(sorted(issues, key=lambda issue: issue.document))
    return resources


def dump_manifests(resources: Iterable[Resource]) -> str:
    """Write ``resources`` as multi-document YAML (``---`` between documents) that loads back equal."""
    return "---\n".join(
        yaml.dump(
            encode_resource(resource),
            Dumper=_SafeDumper,
            sort_keys=False,
            default_flow_style=False,
            allow_unicode=True,
            width=_LINE_WIDTH,
        )
        for resource in resources
    )


def resource_to_dict(resource: Resource) -> dict[str, Any]:
    """The calicoctl-style document of ``resource`` (apiVersion, kind, metadata, spec)."""
    return encode_resource(resource)


def resource_from_dict(document: dict[str, Any]) -> Resource:
    """Build one resource from one parsed document; raise ``ManifestError`` if it is invalid."""
    if isinstance(document, dict) and document.get("kind") == "List":
        raise ManifestError([ManifestIssue(1, "a List holds several resources: use load_manifests", "kind")])
    resource, issues = decode_document(RawDocument(1, "", document))
    if resource is None:
        raise ManifestError(issues or [ManifestIssue(1, "not a resource")])
    return resource
