"""What a selector sees of an endpoint or network set: its labels combined the way Felix combines them.

Felix evaluates every selector against one label map per endpoint: the endpoint's own labels, the
implicit ``projectcalico.org/*`` labels, and the labels inherited from profiles, prefixed ``pcns.``
(from the namespace, including ``pcns.projectcalico.org/name``) and ``pcsa.`` (from the service
account). The engine rewrites policy and rule selectors onto the same prefixed map (see
``selectors.py``), so one label map per identity answers every selector.

Service-account labels are never in a flow record: for a pod, every ``pcsa.*`` label (and the
service-account name when the record lacks it) is *unknown*, and a selector that reads one matches
uncertainly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from ringfence.model import Namespace

NAMESPACE_LABEL: Final = "projectcalico.org/namespace"
ORCHESTRATOR_LABEL: Final = "projectcalico.org/orchestrator"
SERVICE_ACCOUNT_LABEL: Final = "projectcalico.org/serviceaccount"
NAME_LABEL: Final = "projectcalico.org/name"
K8S_NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"
NAMESPACE_PREFIX: Final = "pcns."
SERVICE_ACCOUNT_PREFIX: Final = "pcsa."
SERVICE_ACCOUNT_NAME_LABEL: Final = SERVICE_ACCOUNT_PREFIX + NAME_LABEL
ALWAYS_PRESENT_FOR_PODS: Final = frozenset({SERVICE_ACCOUNT_LABEL, SERVICE_ACCOUNT_NAME_LABEL})
"""Kubernetes gives every pod a service account (``default`` unless named), so these labels are present."""


@dataclass(frozen=True, slots=True, eq=False)
class Identity:
    """One label context: a pod, a host endpoint or a network set.

    ``uid`` is unique within an engine and keys the per-selector result caches. ``kind`` is ``wep``,
    ``hep``, ``ns`` (a NetworkSet or GlobalNetworkSet). ``namespace`` is None for host endpoints and
    global network sets. ``service_account_known`` tells whether a pod's service-account name is known.
    """

    uid: int
    kind: str
    labels: Mapping[str, str]
    namespace: str | None = None
    name: str | None = None
    service_account_known: bool = True

    def label_unknown(self, label: str) -> bool:
        """Whether the record cannot tell this label's value (service-account facts of a pod)."""
        if self.kind != "wep":
            return False
        if label in (SERVICE_ACCOUNT_LABEL, SERVICE_ACCOUNT_NAME_LABEL):
            return not self.service_account_known
        return label.startswith(SERVICE_ACCOUNT_PREFIX)

    @property
    def has_unknown_labels(self) -> bool:
        """Whether some label of this identity is unknown (true for every pod: ``pcsa.*``)."""
        return self.kind == "wep"


@dataclass(slots=True)
class NamespaceDirectory:
    """Namespace labels by name, with the labels every Kubernetes namespace carries.

    A namespace seen only in flows (no Namespace resource) still has ``projectcalico.org/name`` and
    ``kubernetes.io/metadata.name`` (the API server sets the latter on every namespace since 1.22).
    """

    _labels: dict[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, namespaces: Iterable[Namespace]) -> NamespaceDirectory:
        """Index the given Namespace resources."""
        directory = cls()
        for namespace in namespaces:
            directory._labels[namespace.name] = _namespace_labels(namespace.name, namespace.metadata.labels)
        return directory

    def labels(self, name: str) -> Mapping[str, str]:
        """The labels ``namespaceSelector`` sees for namespace ``name``."""
        found = self._labels.get(name)
        if found is None:
            found = _namespace_labels(name, {})
            self._labels[name] = found
        return found

    def inherited(self, name: str) -> dict[str, str]:
        """The ``pcns.``-prefixed labels an endpoint or set of namespace ``name`` inherits."""
        return {NAMESPACE_PREFIX + key: value for key, value in self.labels(name).items()}


def _namespace_labels(name: str, labels: Mapping[str, str]) -> Mapping[str, str]:
    combined = {K8S_NAMESPACE_NAME_LABEL: name}
    combined.update(labels)
    combined[NAME_LABEL] = name
    return combined


class IdentityFactory:
    """Builds and interns identities, so equal label contexts share one ``uid`` (and cached results)."""

    __slots__ = ("_interned", "namespaces")

    def __init__(self, namespaces: NamespaceDirectory) -> None:
        self.namespaces = namespaces
        self._interned: dict[tuple[object, ...], Identity] = {}

    def _intern(
        self, kind: str, labels: dict[str, str], namespace: str | None, name: str | None, *, sa_known: bool = True
    ) -> Identity:
        key = (kind, namespace, name, sa_known, tuple(sorted(labels.items())))
        found = self._interned.get(key)
        if found is None:
            found = Identity(len(self._interned) + 1, kind, labels, namespace, name, sa_known)
            self._interned[key] = found
        return found

    def workload(
        self, labels: Iterable[tuple[str, str]], namespace: str | None, service_account: str | None
    ) -> Identity:
        """A pod: own labels over inherited ``pcns.*``/``pcsa.*`` ones, then the implicit labels.

        The service account comes from ``service_account`` or, failing that, from the record's
        ``projectcalico.org/serviceaccount`` label.
        """
        own = dict(labels)
        if service_account is None:
            service_account = own.get(SERVICE_ACCOUNT_LABEL)
        combined: dict[str, str] = {}
        if namespace is not None:
            combined.update(self.namespaces.inherited(namespace))
        if service_account is not None:
            combined[SERVICE_ACCOUNT_NAME_LABEL] = service_account
        combined.update(own)
        combined[ORCHESTRATOR_LABEL] = "k8s"
        if namespace is not None:
            combined[NAMESPACE_LABEL] = namespace
        if service_account is not None:
            combined[SERVICE_ACCOUNT_LABEL] = service_account
        return self._intern("wep", combined, namespace, None, sa_known=service_account is not None)

    def host(self, labels: Iterable[tuple[str, str]]) -> Identity:
        """A host endpoint: its own labels; not namespaced."""
        return self._intern("hep", dict(labels), None, None)

    def network_set(self, name: str, namespace: str | None, labels: Iterable[tuple[str, str]]) -> Identity:
        """A (Global)NetworkSet: a namespaced set inherits its namespace's labels and gets the namespace label."""
        combined: dict[str, str] = {}
        if namespace is not None:
            combined.update(self.namespaces.inherited(namespace))
        combined.update(labels)
        if namespace is not None:
            combined[NAMESPACE_LABEL] = namespace
        return self._intern("ns", combined, namespace, name)
