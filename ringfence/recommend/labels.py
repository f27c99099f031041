"""Stable labels and the selectors written from them.

Controllers stamp pods with labels that change on every rollout (``pod-template-hash``) or differ per
replica (``statefulset.kubernetes.io/pod-name``); a rule that names them would stop matching after the
next deployment. Calico's implicit ``projectcalico.org/*`` labels are dropped too: the namespace one is
implied by the rule's scope, and the service-account ones are never known from a flow record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

UNSTABLE_LABELS: Final = frozenset(
    {
        "pod-template-hash",
        "pod-template-generation",
        "controller-revision-hash",
        "controller-uid",
        "job-name",
        "statefulset.kubernetes.io/pod-name",
        "statefulset.kubernetes.io/pod-index",
        "apps.kubernetes.io/pod-index",
        "batch.kubernetes.io/controller-uid",
        "batch.kubernetes.io/job-name",
        "batch.kubernetes.io/job-completion-index",
        "security.istio.io/tlsMode",
        "service.istio.io/canonical-revision",
    }
)
"""Label keys whose values change across rollouts or replicas."""

_UNSTABLE_PREFIXES: Final = ("projectcalico.org/",)

ALL_SELECTOR: Final = "all()"


def stable_labels(labels: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The labels of ``labels`` that survive a rollout and identify a workload rather than a replica."""
    return {
        key: value for key, value in labels if key not in UNSTABLE_LABELS and not key.startswith(_UNSTABLE_PREFIXES)
    }


def common_labels(label_maps: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """The labels present with the same value in every map (empty when there are no maps)."""
    common: dict[str, str] | None = None
    for labels in label_maps:
        if common is None:
            common = dict(labels)
        else:
            common = {key: value for key, value in common.items() if labels.get(key) == value}
    return common or {}


def quote(value: str) -> str:
    """``value`` as a selector string literal (the language has no escapes: pick the other quote)."""
    return f'"{value}"' if "'" in value else f"'{value}'"


def equality_selector(labels: Mapping[str, str]) -> str:
    """``k1 == 'v1' && k2 == 'v2'`` with keys sorted, or ``all()`` for no labels."""
    if not labels:
        return ALL_SELECTOR
    return " && ".join(f"{key} == {quote(labels[key])}" for key in sorted(labels))


def namespace_name_selector(namespace: str) -> str:
    """The namespace selector of exactly one namespace, by the label Calico gives every namespace."""
    return f"projectcalico.org/name == {quote(namespace)}"
