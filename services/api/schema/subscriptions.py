"""The Subscription root: job progress and impact previews from the workers' Redis events; the flow tail.

Any API replica can serve any job: events travel on Redis pub/sub (``services.common.pubsub``), with a
backlog so that a subscriber arriving late misses nothing. A preview's job is cancelled when its
client leaves before the summary.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Annotated, Any, Final

import strawberry

from ringfence.model import resource_key
from services.api import changes
from services.api.documents import scope_of
from services.api.permissions import Verb
from services.api.schema.context import Info
from services.api.schema.errors import ApiError, NotFoundError
from services.api.schema.flow_tail import TAIL_HELP, flow_from_event, flow_tail_field
from services.api.schema.flow_types import (
    Flow,
    ImpactedFlow,
    ImpactEvent,
    ImpactProgress,
    ImpactSummary,
    ResourceRef,
)
from services.api.schema.jobs import Job
from services.api.schema.manifest_errors import load
from services.api.schema.mutations import start_job
from services.common import pubsub
from services.common.db import jobs as job_store
from services.common.db.jobs import JobKind, JobState

logger = logging.getLogger(__name__)

IDLE_TIMEOUT_SECONDS: Final = 600.0
_STATE_RANK: Final = {"queued": 0, "running": 1, "succeeded": 2, "failed": 2, "cancelled": 2}


class JobFailedError(ApiError):
    code = "JOB_FAILED"


class JobStalledError(ApiError):
    code = "JOB_STALLED"


@strawberry.type
class Subscription:
    flow_tail: AsyncGenerator[Flow, None] = strawberry.subscription(resolver=flow_tail_field, description=TAIL_HELP)

    @strawberry.subscription(description="The job now, then every change of its state and progress until it ends.")
    async def job_progress(self, info: Info, id: strawberry.ID) -> AsyncGenerator[Job, None]:  # noqa: A002
        services = info.context.services
        info.context.caller  # noqa: B018 - authenticated callers only
        record = await job_store.get(services.pool, str(id))
        if record is None:
            raise NotFoundError(f"job {id} does not exist", field="id")
        current = Job.from_record(record)
        yield current
        if record.state.finished:
            return
        try:
            async for event in pubsub.subscribe(services.redis, str(id), idle_timeout=IDLE_TIMEOUT_SECONDS):
                if event.get("type") != "Job":
                    continue
                job = Job.from_event(event, current)
                if _older(job, current):
                    continue
                current = job
                yield job
                if _STATE_RANK.get(job.state, 0) == 2:
                    return
        except TimeoutError:
            raise JobStalledError(f"job {id} sent no news for {IDLE_TIMEOUT_SECONDS:.0f} s") from None

    @strawberry.subscription(
        description="Preview a change over the stored flows: progress, each flow whose verdict changes, then one "
        "summary, after which the stream ends. Leaving early cancels the preview."
    )
    async def impact_preview(
        self,
        info: Info,
        yaml: str,
        deletes: list[ResourceRef] | None = None,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
    ) -> AsyncGenerator[ImpactEvent, None]:
        services = info.context.services
        resources = load(yaml) if yaml.strip() else []
        for resource in resources:
            info.context.require(Verb.PREVIEW, scope_of(resource), f"a change of {resource_key(resource)}")
        removed = []
        for ref in deletes or []:
            entry = await changes.stored_entry(services.pool, ref.kind, ref.name, ref.namespace or None)
            info.context.require(Verb.PREVIEW, scope_of(entry.resource), f"the deletion of {entry.stored.key}")
            removed.append({"kind": entry.stored.kind, "namespace": entry.stored.namespace, "name": entry.stored.name})
        params = {
            "yaml": yaml,
            "deletes": removed,
            "from": None if from_ is None else from_.isoformat(),
            "to": None if to is None else to.isoformat(),
        }
        job = await start_job(info, JobKind.PREVIEW, params)
        finished = False
        try:
            async for event in pubsub.subscribe(services.redis, job.id, idle_timeout=IDLE_TIMEOUT_SECONDS):
                kind = event.get("type")
                if kind == "ImpactProgress":
                    yield ImpactProgress(processed=int(event["processed"]), total=int(event["total"]))
                elif kind == "ImpactedFlow":
                    yield impacted_flow(event)
                elif kind == "ImpactSummary":
                    finished = True
                    yield ImpactSummary(
                        examined=int(event["examined"]),
                        changed=int(event["changed"]),
                        newly_denied=int(event["newlyDenied"]),
                        newly_allowed=int(event["newlyAllowed"]),
                        uncertain=int(event["uncertain"]),
                    )
                    return
                elif kind == "Job" and event.get("state") in (JobState.FAILED, JobState.CANCELLED):
                    finished = True
                    raise JobFailedError(
                        f"the preview job {job.id} {event['state']}: {event.get('error') or 'no reason given'}",
                        job=job.id,
                    )
        except TimeoutError:
            raise JobStalledError(f"the preview job {job.id} sent no news for {IDLE_TIMEOUT_SECONDS:.0f} s") from None
        finally:
            if not finished:
                services.spawn(_cancel(services.pool, job.id))


async def _cancel(pool: Any, job_id: str) -> None:
    try:
        if await job_store.cancel(pool, job_id) is not None:
            logger.info("preview job %s cancelled: its subscriber left", job_id)
    except Exception:
        logger.exception("could not cancel job %s", job_id)


def _older(job: Job, current: Job) -> bool:
    """Whether ``job`` is an event older than what the subscriber already has (a replayed backlog)."""
    new_rank, old_rank = _STATE_RANK.get(job.state, 0), _STATE_RANK.get(current.state, 0)
    return new_rank < old_rank or (new_rank == old_rank and job.progress < current.progress)


def impacted_flow(event: dict[str, Any]) -> ImpactedFlow:
    """An ``ImpactedFlow`` event of the workers as the GraphQL type (flow fields in camelCase)."""
    return ImpactedFlow(
        flow=flow_from_event(event["flow"]),
        before=event["before"],
        after=event["after"],
        before_trace=list(event.get("beforeTrace") or []),
        after_trace=list(event.get("afterTrace") or []),
        change=str(event.get("change") or ("uncertain" if event.get("uncertain") else "changed")),
    )
