"""A label index over policy selectors: which policies can possibly select an endpoint.

Each policy's effective selector says which labels any endpoint it selects must carry with one of a
few values (``required_equalities``: ``projectcalico.org/namespace == 'ns'`` for every namespaced
policy, ``app == 'x'`` for many others). A policy is filed under one such label and value; an
endpoint only needs its selector evaluated for the policies filed under its own label values, plus
those with no usable requirement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from ringfence.engine.identity import NAMESPACE_LABEL, SERVICE_ACCOUNT_LABEL, SERVICE_ACCOUNT_PREFIX
from ringfence.engine.policies import CompiledPolicy

# Prefer the namespace: it is present on every pod and splits policies best.
_PREFERRED: Final = (NAMESPACE_LABEL,)


def _indexable(label: str) -> bool:
    # Service-account facts may be unknown for a pod: a policy filed under one could be missed.
    return label != SERVICE_ACCOUNT_LABEL and not label.startswith(SERVICE_ACCOUNT_PREFIX)


class PolicyIndex:
    """Candidate policies per label map."""

    __slots__ = ("_by_label", "_unindexed")

    def __init__(self, policies: Iterable[CompiledPolicy]) -> None:
        self._by_label: dict[str, dict[str, list[int]]] = {}
        self._unindexed: list[int] = []
        for policy in policies:
            requirements = {
                label: values for label, values in policy.selector.required_equalities().items() if _indexable(label)
            }
            if not requirements:
                self._unindexed.append(policy.uid)
                continue
            label = next((name for name in _PREFERRED if name in requirements), None)
            if label is None:
                label = min(requirements, key=lambda name: (len(requirements[name]), name))
            by_value = self._by_label.setdefault(label, {})
            for value in requirements[label]:
                by_value.setdefault(value, []).append(policy.uid)

    def candidates(self, labels: Mapping[str, str]) -> set[int]:
        """Uids of the policies whose selector may match ``labels``; the others surely do not."""
        found = set(self._unindexed)
        for label, by_value in self._by_label.items():
            value = labels.get(label)
            if value is not None:
                found.update(by_value.get(value, ()))
        return found
