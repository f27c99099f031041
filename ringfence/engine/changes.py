"""Change sets for impact previews: apply them to a copy of the resources, then diff the verdicts.

Previewing a staged policy means previewing its enforcement: a staged ``Set`` (or ``Learn``, a
recommendation) among the upserts becomes its enforced twin, replacing the enforced policy of the
same name; a staged ``Delete`` deletes its enforced twin; a staged ``Ignore`` is stored as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, Literal, Protocol

from ringfence.engine.engine import PolicyEngine, flow_of
from ringfence.engine.errors import EngineError
from ringfence.engine.verdict import ALLOW, DENY, UNCERTAIN, Verdict, VerdictAction, combine_actions
from ringfence.flows.record import Flow, Reporter
from ringfence.model import (
    GlobalNetworkPolicy,
    KubernetesNetworkPolicy,
    NetworkPolicy,
    Resource,
    ResourceKey,
    StagedAction,
    StagedGlobalNetworkPolicy,
    StagedKubernetesNetworkPolicy,
    StagedNetworkPolicy,
    resource_key,
)

ChangeKind = Literal["newly_denied", "newly_allowed", "uncertain"]
_BATCH = 20_000


class ResourceRef(Protocol):
    """What identifies a resource to delete (:class:`~ringfence.model.ResourceKey` is one)."""

    @property
    def kind(self) -> str: ...
    @property
    def namespace(self) -> str | None: ...
    @property
    def name(self) -> str: ...


class ChangeSetError(EngineError):
    """A change set that cannot be applied (a delete naming nothing)."""


def enforced_twin(policy: StagedNetworkPolicy | StagedGlobalNetworkPolicy | StagedKubernetesNetworkPolicy) -> Resource:
    """The enforced policy a staged one becomes when enforced (same metadata and spec)."""
    if isinstance(policy, StagedNetworkPolicy):
        return NetworkPolicy(policy.metadata, policy.spec)
    if isinstance(policy, StagedGlobalNetworkPolicy):
        return GlobalNetworkPolicy(policy.metadata, policy.spec)
    return KubernetesNetworkPolicy(policy.metadata, policy.spec)


def _matches(key: ResourceKey, resource: Resource, ref: ResourceRef) -> bool:
    if key.kind != ref.kind or key.namespace != (ref.namespace if resource.namespaced else None):
        return False
    return ref.name in (key.name, resource.metadata.name)


def apply_changes(
    resources: Iterable[Resource], upserts: Iterable[Resource] = (), deletes: Iterable[ResourceRef] = ()
) -> list[Resource]:
    """The resources after deleting ``deletes`` then creating or replacing ``upserts`` (inputs untouched).

    A delete names a resource by kind, namespace and name (plain or tier-qualified for Calico
    policies); one naming nothing raises :class:`ChangeSetError`.
    """
    store: dict[ResourceKey, Resource] = {resource_key(resource): resource for resource in resources}
    for ref in deletes:
        doomed = [key for key, resource in store.items() if _matches(key, resource, ref)]
        if not doomed:
            where = f"{ref.namespace}/" if ref.namespace else ""
            raise ChangeSetError(f"cannot delete {ref.kind} {where}{ref.name}: no such resource")
        for key in doomed:
            del store[key]
    for resource in upserts:
        if isinstance(resource, StagedNetworkPolicy | StagedGlobalNetworkPolicy | StagedKubernetesNetworkPolicy):
            action = StagedAction(resource.staged_action)
            if action is not StagedAction.IGNORE:
                twin = enforced_twin(resource)
                store.pop(resource_key(resource), None)
                store.pop(resource_key(twin), None)
                if action is not StagedAction.DELETE:
                    store[resource_key(twin)] = twin
                continue
        store[resource_key(resource)] = resource
    return list(store.values())


@dataclass(frozen=True, slots=True)
class FlowChange:
    """A flow whose verdict differs between two engines (or became undecidable).

    ``before``/``after`` are the enforced actions (the staged view's with ``view="staged"``). When a
    source-reported flow goes from deny to allow, the destination side is evaluated with the new
    policies (``destination``) and ``after`` is the connection's outcome.
    """

    flow: Flow
    kind: ChangeKind
    before: VerdictAction
    after: VerdictAction
    before_trace: tuple[str, ...]
    after_trace: tuple[str, ...]
    destination: Verdict | None = None


@dataclass(frozen=True, slots=True)
class ImpactSummary:
    """Counts of an impact preview."""

    examined: int
    changed: int
    newly_denied: int
    newly_allowed: int
    uncertain: int


def summarize(changes: Iterable[FlowChange], examined: int) -> ImpactSummary:
    """Count changes by kind; ``examined`` is the number of flows compared."""
    counts = {"newly_denied": 0, "newly_allowed": 0, "uncertain": 0}
    total = 0
    for change in changes:
        counts[change.kind] += 1
        total += 1
    return ImpactSummary(examined, total, counts["newly_denied"], counts["newly_allowed"], counts["uncertain"])


def _batches(flows: Iterable[Flow | Mapping[str, Any]]) -> Iterator[list[Flow]]:
    iterator = iter(flows)
    while batch := [flow_of(item) for item in islice(iterator, _BATCH)]:
        yield batch


def _view(verdict: Verdict, view: str) -> tuple[VerdictAction, tuple[str, ...]]:
    return (verdict.staged_action, verdict.staged_trace) if view == "staged" else (verdict.action, verdict.trace)


def diff_verdicts(
    before: PolicyEngine,
    after: PolicyEngine,
    flows: Iterable[Flow | Mapping[str, Any]],
    *,
    view: Literal["enforced", "staged"] = "enforced",
) -> Iterator[FlowChange]:
    """Yield every flow whose action differs between the engines, and every uncertain flow whose trace does.

    Each distinct evaluation key is evaluated once per engine (the engines' batch API).
    """
    for batch in _batches(flows):
        for flow, old, new in zip(batch, before.evaluate_many(batch), after.evaluate_many(batch), strict=True):
            old_action, old_trace = _view(old, view)
            new_action, new_trace = _view(new, view)
            destination: Verdict | None = None
            if flow.reporter is Reporter.SOURCE and old_action == DENY and new_action == ALLOW:
                destination = after.evaluate_connection(flow).destination
                if destination is not None:
                    new_action = combine_actions(new_action, _view(destination, view)[0])
            if old_action == new_action and (old_action != UNCERTAIN or old_trace == new_trace):
                continue
            kind: ChangeKind
            if UNCERTAIN in (old_action, new_action):
                kind = "uncertain"
            elif new_action == DENY:
                kind = "newly_denied"
            else:
                kind = "newly_allowed"
            yield FlowChange(flow, kind, old_action, new_action, old_trace, new_trace, destination)
