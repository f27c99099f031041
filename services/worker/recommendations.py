"""Recommendation jobs: learn a scope's staged policy from its stored flows and store it.

``ringfence.recommend`` takes a job whose params name the scope (``namespace``, optional ``workload``,
a ``name_aggr``; optional ``tier``) and window (``from``, ``to``). ``ringfence.recommend_continuous``
(beat) refines every ``Learn`` recommendation and creates namespace recommendations for the namespaces
that a ``recommendation_scopes`` row selects.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Final

import asyncpg

from ringfence.flows.record import Flow
from ringfence.manifests import ManifestError, dump_manifests, resource_from_dict, resource_to_dict
from ringfence.model import (
    DEFAULT_TIER,
    GlobalNetworkSet,
    Namespace,
    NetworkSet,
    ResourceKey,
    StagedAction,
    StagedNetworkPolicy,
    qualified_policy_name,
)
from ringfence.recommend import DEFAULT_STABILIZATION_PERIOD, Recommendation, RecommendationError, Scope, recommend
from ringfence.recommend.status import SCOPE_ANNOTATION
from ringfence.selector import SelectorError, parse_selector
from services.common.db import audit, inventory, recommendation_scopes
from services.common.db import flows as flow_store
from services.common.db import resources as resource_store
from services.worker.jobrun import JobRun
from services.worker.preview import parse_window
from services.worker.state import load_resources

logger = logging.getLogger(__name__)

RECOMMENDER: Final = "ringfence-recommender"
_ATTEMPTS: Final = 3


class RecommendInputError(ValueError):
    """The parameters of a recommendation job are malformed."""


def scope_of_params(params: dict[str, Any]) -> Scope:
    """The scope a recommendation job's params name."""
    namespace = params.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        raise RecommendInputError("a recommendation needs a namespace")
    workload = params.get("workload") or None
    tier = params.get("tier") or DEFAULT_TIER
    return Scope(namespace, str(workload) if workload else None, str(tier))


def scope_of_policy(policy: StagedNetworkPolicy) -> Scope | None:
    """The scope recorded on a recommended policy, or None for a policy that is not one."""
    described = policy.metadata.annotations.get(SCOPE_ANNOTATION, "")
    kind, _, where = described.partition(":")
    if kind == "namespace" and where:
        return Scope(where, None, policy.tier)
    if kind == "workload" and "/" in where:
        namespace, _, workload = where.partition("/")
        return Scope(namespace, workload, policy.tier)
    return None


async def run_recommend(run: JobRun, *, now: datetime) -> dict[str, Any]:
    """The body of ``ringfence.recommend``: the result lists the staged policy it wrote or kept."""
    scope = scope_of_params(run.params)
    from_, to = parse_window(run.params)
    actor = run.job.requested_by if run.job is not None else RECOMMENDER
    async with run.pool.acquire() as conn:
        flows = await scope_flows(conn, scope.namespace, from_, to)
        await run.checkpoint(0.5)
        outcome = await recommend_and_store(conn, scope, flows, now, actor=actor)
    return {"policies": [outcome]}


async def scope_flows(
    conn: asyncpg.Connection, namespace: str, from_: datetime | None, to: datetime | None
) -> list[Flow]:
    """The flow keys of ``namespace`` (either side) in the window."""
    return [key.flow async for key in flow_store.flow_keys(conn, from_, to, namespace=namespace)]


async def recommend_and_store(
    conn: asyncpg.Connection,
    scope: Scope,
    flows: Iterable[Flow],
    now: datetime,
    *,
    actor: str,
    stabilization_period: timedelta = DEFAULT_STABILIZATION_PERIOD,
) -> dict[str, Any]:
    """Recommend for ``scope`` and store the policy unless the user took it over; describe the outcome."""
    flows = list(flows)
    sets = [
        r
        for r in await load_resources(conn, [NetworkSet.kind, GlobalNetworkSet.kind])
        if isinstance(r, NetworkSet | GlobalNetworkSet)
    ]
    key = ResourceKey(StagedNetworkPolicy.kind, scope.namespace, qualified_policy_name(scope.policy_name(), scope.tier))
    for attempt in range(_ATTEMPTS):
        stored = await resource_store.get_resource(conn, key)
        existing = _staged_policy(stored.document) if stored is not None else None
        if stored is not None and existing is None:
            msg = f"{key} exists but no longer reads as a StagedNetworkPolicy: left alone"
            raise RecommendationError(msg)
        enforced_key = dataclasses.replace(key, kind="NetworkPolicy")
        enforced = await resource_store.get_resource(conn, enforced_key) is not None
        rec = recommend(
            flows,
            scope,
            now,
            existing,
            enforced=enforced,
            network_sets=sets,
            stabilization_period=stabilization_period,
        )
        if not rec.written:
            return describe(rec, key)
        document = _document(rec.policy)
        change = resource_store.ResourceChange(key, document, stored.resource_version if stored else None)
        try:
            async with conn.transaction():
                (applied,) = await resource_store.apply_changes(conn, [change], actor=actor)
                if applied.changed:
                    await audit.record(
                        conn,
                        actor=actor,
                        action="recommend",
                        kind=key.kind,
                        namespace=key.namespace,
                        name=key.name,
                        before=stored.document if stored else None,
                        after=document,
                    )
        except resource_store.ResourceConflictError:
            if attempt == _ATTEMPTS - 1:
                raise
            logger.info("%s changed while recommending; trying again", key)
            continue
        return describe(rec, key, resource_version=applied.after.resource_version if applied.after else None)
    raise AssertionError("unreachable")  # pragma: no cover


def describe(rec: Recommendation, key: ResourceKey, *, resource_version: int | None = None) -> dict[str, Any]:
    """What a job result says about one recommended policy."""
    policy = rec.policy
    return {
        "kind": key.kind,
        "namespace": key.namespace,
        "name": policy.name,
        "key": key.name,
        "stagedAction": policy.staged_action.value,
        "status": None if rec.status is None else rec.status.value,
        "outcome": rec.outcome.value,
        "flows": rec.flows,
        "ingressRules": len(policy.spec.ingress),
        "egressRules": len(policy.spec.egress),
        "resourceVersion": None if resource_version is None else str(resource_version),
        "yaml": dump_manifests([policy]),
    }


async def run_continuous(run: JobRun, *, now: datetime) -> dict[str, Any]:
    """The body of ``ringfence.recommend_continuous``: refine every learning recommendation, add scoped ones."""
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    async with run.pool.acquire() as conn:
        scopes = await _continuous_scopes(conn)
        by_namespace: dict[str, list[Flow]] = {}
        for index, (scope, window, period) in enumerate(scopes):
            if scope.namespace not in by_namespace:
                by_namespace[scope.namespace] = await scope_flows(conn, scope.namespace, now - window, None)
            try:
                results.append(
                    await recommend_and_store(
                        conn,
                        scope,
                        by_namespace[scope.namespace],
                        now,
                        actor=RECOMMENDER,
                        stabilization_period=period,
                    )
                )
            except RecommendationError as error:
                logger.info("no recommendation for %s: %s", scope.describe(), error)
                errors.append(f"{scope.describe()}: {error}")
            await run.checkpoint((index + 1) / len(scopes))
    return {"policies": results, "skipped": errors}


async def _continuous_scopes(conn: asyncpg.Connection) -> list[tuple[Scope, timedelta, timedelta]]:
    found: dict[Scope, tuple[timedelta, timedelta]] = {}
    for resource in await load_resources(conn, [StagedNetworkPolicy.kind]):
        if isinstance(resource, StagedNetworkPolicy) and resource.staged_action is StagedAction.LEARN:
            scope = scope_of_policy(resource)
            if scope is not None:
                found[scope] = (timedelta(days=1), DEFAULT_STABILIZATION_PERIOD)
    configured = await recommendation_scopes.list_scopes(conn)
    if configured:
        namespaces = await _namespace_labels(conn)
        for item in configured:
            try:
                selector = parse_selector(item.namespace_selector)
            except SelectorError as error:
                logger.warning("recommendation scope %s has a bad selector: %s", item.name, error)
                continue
            for name, labels in sorted(namespaces.items()):
                if selector.matches(labels):
                    found.setdefault(Scope(name, None, item.tier), (item.window, item.stabilization_period))
    return [(scope, window, period) for scope, (window, period) in found.items()]


async def _namespace_labels(conn: asyncpg.Connection) -> dict[str, dict[str, str]]:
    """Labels of every known namespace (resources first, then those only seen in flows)."""
    labels: dict[str, dict[str, str]] = {}
    for seen in await inventory.list_namespaces(conn):
        labels[seen.name] = dict(seen.labels or ())
    for resource in await load_resources(conn, [Namespace.kind]):
        labels[resource.metadata.name] = dict(resource.metadata.labels)
    for name, values in labels.items():
        values.setdefault("kubernetes.io/metadata.name", name)
        values["projectcalico.org/name"] = name
    return labels


def _staged_policy(document: dict[str, Any]) -> StagedNetworkPolicy | None:
    try:
        resource = resource_from_dict(document)
    except ManifestError:
        return None
    return resource if isinstance(resource, StagedNetworkPolicy) else None


def _document(policy: StagedNetworkPolicy) -> dict[str, Any]:
    metadata = dataclasses.replace(policy.metadata, resource_version=None, uid=None, creation_timestamp=None)
    return resource_to_dict(dataclasses.replace(policy, metadata=metadata))
