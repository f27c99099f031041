"""The Mutation root: apply and delete resources, promote, stage, reorder, revert; start and cancel jobs."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from typing import Annotated, Any

import strawberry

from ringfence.manifests import ManifestError, resource_from_dict
from ringfence.model import (
    DEFAULT_TIER,
    Resource,
    ResourceKey,
    StagedAction,
    StagedGlobalNetworkPolicy,
    StagedKubernetesNetworkPolicy,
    StagedNetworkPolicy,
    Tier,
    resource_key,
)
from services.api import changes
from services.api.changes import Change
from services.api.documents import (
    POLICY_TYPES,
    STAGED_KIND_OF_ENFORCED,
    STAGED_KINDS,
    EnforcedPolicy,
    StagedPolicy,
    parse_version,
    staged_twin,
)
from services.api.permissions import Role, Scope, Verb
from services.api.schema.context import Info
from services.api.schema.errors import BadUserInputError, ConflictError, ForbiddenError, NotFoundError
from services.api.schema.jobs import Job
from services.api.schema.manifest_errors import load
from services.api.schema.reorder import REORDER_HELP, reorder_policies
from services.api.schema.types import Policy
from services.api.schema.types import Resource as ResourceType
from services.api.snapshot import Entry
from services.common.db import audit
from services.common.db import jobs as job_store
from services.common.db import resources as store
from services.common.db.jobs import JobKind

logger = logging.getLogger(__name__)

FromArgument = Annotated[datetime | None, strawberry.argument(name="from")]


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Create or update the resources of calicoctl-style YAML, all or none. A document carrying "
        "metadata.resourceVersion is refused (CONFLICT) when that version is stale. dryRun checks everything "
        "and stores nothing."
    )
    async def apply_manifests(self, info: Info, yaml: str, dry_run: bool = False) -> list[ResourceType]:
        requested = load(yaml)
        change_list = [Change(resource_key(r), r, _expected(r.metadata.resource_version, r)) for r in requested]
        entries = await _apply(info, change_list, dry_run=dry_run)
        return [ResourceType.from_entry(entry) for entry in entries if entry is not None]

    @strawberry.mutation(description="Delete a resource; with resourceVersion, only if it is still that version.")
    async def delete_resource(
        self,
        info: Info,
        kind: str,
        name: str,
        namespace: str | None = None,
        resource_version: str | None = None,
    ) -> bool:
        entry = await _stored(info, kind, name, namespace)
        expected = _expected(resource_version, entry.resource)
        await _apply(info, [Change(entry.stored.key, None, expected)])
        return True

    @strawberry.mutation(
        description="Enforce a staged policy as the lab's Enforce does: stagedAction Set (or Learn) creates or "
        "replaces the enforced twin, Delete deletes it; the staged policy is removed. Returns the enforced "
        "policy (for Delete, as it was before its deletion)."
    )
    async def promote_staged_policy(self, info: Info, kind: str, name: str, namespace: str | None = None) -> Policy:
        if kind not in STAGED_KINDS:
            raise BadUserInputError(f"{kind!r} is not a staged policy kind ({', '.join(sorted(STAGED_KINDS))})")
        entry = await _stored(info, kind, name, namespace)
        staged = entry.resource
        assert isinstance(staged, POLICY_TYPES)
        assert staged.staged
        info.context.require(Verb.PROMOTE, Scope(staged.tier, entry.stored.namespace), str(entry.stored.key))
        plan = changes.promotion(staged, entry.stored.resource_version)  # type: ignore[arg-type]
        twin_key = plan[0].key
        previous = await store.get_resource(info.context.services.pool, twin_key)
        if plan[0].resource is None and previous is None:
            raise NotFoundError(
                f"the staged policy deletes {twin_key}, which does not exist",
                kind=twin_key.kind,
                namespace=twin_key.namespace,
                name=twin_key.name,
            )
        results = await _apply(info, plan)
        if results[0] is not None:
            return Policy.from_entry(results[0])
        assert previous is not None
        return Policy.from_entry(changes.entry_of(previous))

    @strawberry.mutation(
        description="Stage an edit of an enforced policy: create its staged twin (a copy with stagedAction) to "
        "edit and preview before promoting it."
    )
    async def stage_policy(
        self,
        info: Info,
        kind: str,
        name: str,
        namespace: str | None = None,
        staged_action: str = "Set",
    ) -> Policy:
        if kind not in STAGED_KIND_OF_ENFORCED:
            raise BadUserInputError(f"{kind!r} is not an enforced policy kind", field="kind")
        try:
            action = StagedAction(staged_action)
        except ValueError:
            raise BadUserInputError(
                f"stagedAction {staged_action!r} is not one of Set, Delete", field="stagedAction"
            ) from None
        if action not in (StagedAction.SET, StagedAction.DELETE):
            raise BadUserInputError("an edit is staged with stagedAction Set or Delete", field="stagedAction")
        entry = await _stored(info, kind, name, namespace)
        enforced: EnforcedPolicy = entry.resource  # type: ignore[assignment]
        staged: StagedPolicy = staged_twin(enforced, action)
        key = resource_key(staged)
        if await store.get_resource(info.context.services.pool, key) is not None:
            raise ConflictError(f"{key} already exists: edit it, or delete it first", kind=key.kind, name=key.name)
        results = await _apply(info, [Change(key, staged)])
        assert results[0] is not None
        return Policy.from_entry(results[0])

    @strawberry.mutation(
        description="Accept or ignore a recommendation: set a staged policy's stagedAction to Set (accepted: "
        "the recommender stops refining it), Ignore (the engine and the recommender leave it alone) or Learn."
    )
    async def set_staged_action(
        self,
        info: Info,
        *,
        kind: str,
        name: str,
        staged_action: str,
        namespace: str | None = None,
        resource_version: str | None = None,
    ) -> Policy:
        if kind not in STAGED_KINDS:
            raise BadUserInputError(f"{kind!r} is not a staged policy kind", field="kind")
        try:
            action = StagedAction(staged_action)
        except ValueError:
            raise BadUserInputError(
                f"stagedAction {staged_action!r} is not one of Set, Learn, Ignore", field="stagedAction"
            ) from None
        if action is StagedAction.DELETE:
            raise BadUserInputError(
                "a staged Delete carries no rules: apply one instead of converting a policy", field="stagedAction"
            )
        entry = await _stored(info, kind, name, namespace)
        staged = entry.resource
        assert isinstance(staged, StagedNetworkPolicy | StagedGlobalNetworkPolicy | StagedKubernetesNetworkPolicy)
        if staged.staged_action is StagedAction.DELETE:
            raise BadUserInputError("a staged Delete has no rules to keep", field="stagedAction")
        updated = dataclasses.replace(staged, staged_action=action)
        expected = _expected(resource_version, staged) or entry.stored.resource_version
        results = await _apply(
            info, [Change(entry.stored.key, updated, expected, action=f"staged.{action.value.lower()}")]
        )
        assert results[0] is not None
        return Policy.from_entry(results[0])

    @strawberry.mutation(description="Set the order of a tier or a Calico policy (null: no order, evaluated last).")
    async def set_order(
        self,
        info: Info,
        *,
        kind: str,
        name: str,
        order: float | None,
        namespace: str | None = None,
        resource_version: str | None = None,
    ) -> ResourceType:
        entry = await _stored(info, kind, name, namespace)
        resource = entry.resource
        updated: Resource
        if isinstance(resource, Tier):
            updated = dataclasses.replace(resource, order=order)
        elif isinstance(resource, POLICY_TYPES) and hasattr(resource.spec, "order"):
            updated = dataclasses.replace(resource, spec=dataclasses.replace(resource.spec, order=order))  # type: ignore[arg-type]
        else:
            raise BadUserInputError(f"{kind} has no order (tiers and Calico policies have)", field="kind")
        expected = _expected(resource_version, resource) or entry.stored.resource_version
        results = await _apply(info, [Change(entry.stored.key, updated, expected, action="reorder")])
        assert results[0] is not None
        return ResourceType.from_entry(results[0])

    reorder_policies: list[Policy] = strawberry.mutation(resolver=reorder_policies, description=REORDER_HELP)

    @strawberry.mutation(
        description="Bring a resource back to an earlier version from its history (re-creating it if deleted)."
    )
    async def revert_resource(
        self,
        info: Info,
        *,
        kind: str,
        name: str,
        to_version: str,
        namespace: str | None = None,
        resource_version: str | None = None,
    ) -> ResourceType:
        key = ResourceKey(kind, namespace or None, name)
        target_version = _version_argument(to_version, "toVersion")
        version = await store.get_version(info.context.services.pool, key, target_version)
        if version is None:
            raise NotFoundError(f"{key} has no version {to_version}", field="toVersion")
        try:
            resource = resource_from_dict(version.document)
        except ManifestError as error:
            raise BadUserInputError(f"version {to_version} of {key} no longer validates: {error}") from None
        current = await store.get_resource(info.context.services.pool, key)
        expected = _version_argument(resource_version, "resourceVersion") if resource_version else None
        if expected is None and current is not None:
            expected = current.resource_version
        results = await _apply(info, [Change(key, resource, expected, action="revert")])
        assert results[0] is not None
        return ResourceType.from_entry(results[0])

    @strawberry.mutation(
        description="Start recommending policies for a namespace, or one workload (its name_aggr) in it; "
        "the job's result lists the staged policies it wrote."
    )
    async def recommend_policies(
        self,
        info: Info,
        namespace: str,
        workload: str | None = None,
        from_: FromArgument = None,
        to: datetime | None = None,
    ) -> Job:
        if not namespace:
            raise BadUserInputError("namespace must not be empty", field="namespace")
        info.context.require(Verb.WRITE, Scope(DEFAULT_TIER, namespace), f"recommended policies in {namespace!r}")
        params = {"namespace": namespace, "workload": workload, "from": _iso(from_), "to": _iso(to)}
        record = await start_job(info, JobKind.RECOMMEND, params)
        return Job.from_record(record)

    @strawberry.mutation(description="Cancel a queued or running job; returns it as it stands.")
    async def cancel_job(self, info: Info, id: strawberry.ID) -> Job:  # noqa: A002 - the schema's name
        pool = info.context.services.pool
        record = await job_store.get(pool, str(id))
        if record is None:
            raise NotFoundError(f"job {id} does not exist", field="id")
        principal = info.context.caller
        if record.requested_by != principal.name and principal.role is not Role.ADMIN:
            raise ForbiddenError(
                f"job {id} was started by {record.requested_by!r}: only they or an admin may cancel it"
            )
        async with pool.acquire() as conn, conn.transaction():
            cancelled = await job_store.cancel(conn, str(id))
            await audit.record(conn, actor=principal.name, action="job.cancel", kind="Job", name=str(id))
        final = cancelled or await job_store.get(pool, str(id))
        assert final is not None
        return Job.from_record(final)


async def start_job(info: Info, kind: JobKind, params: dict[str, Any]) -> job_store.Job:
    """Create a queued job, audit it, commit, then enqueue its task (a lost enqueue is re-sent by the reaper)."""
    services = info.context.services
    principal = info.context.caller
    async with services.pool.acquire() as conn, conn.transaction():
        record = await job_store.create(conn, kind.value, params, principal.name)
        await audit.record(
            conn,
            actor=principal.name,
            action="job.create",
            kind="Job",
            name=record.id,
            after={"kind": kind.value, "params": params},
        )
    services.metrics.jobs_started.labels(kind.value).inc()
    try:
        await services.tasks.send(kind.task_name, [record.id])
    except Exception:
        logger.exception("could not enqueue job %s (%s); the worker's reaper will enqueue it again", record.id, kind)
    return record


async def _apply(info: Info, change_list: list[Change], *, dry_run: bool = False) -> list[Entry | None]:
    services = info.context.services
    async with services.pool.acquire() as conn:
        results = await changes.apply(conn, info.context.caller, change_list, dry_run=dry_run)
    info.context.forget_snapshot()
    return results


async def _stored(info: Info, kind: str, name: str, namespace: str | None) -> Entry:
    return await changes.stored_entry(info.context.services.pool, kind, name, namespace or None)


def _expected(text: str | None, resource: Resource) -> int | None:
    try:
        return parse_version(text)
    except ValueError as error:
        raise BadUserInputError(str(error), field="metadata.resourceVersion", name=resource.metadata.name) from None


def _version_argument(text: str, field: str) -> int:
    try:
        value = parse_version(text, what=field)
    except ValueError as error:
        raise BadUserInputError(str(error), field=field) from None
    if value is None:
        raise BadUserInputError(f"{field} must not be empty", field=field)
    return value


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
