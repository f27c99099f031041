"""GraphQL types for jobs and the audit log, and the Relay page info they share with flows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from services.common.db.audit import AuditEntry as AuditRecord
from services.common.db.jobs import Job as JobRecord


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type(description="Long-running work done by the workers (recommendations, previews).")
class Job:
    id: strawberry.ID
    kind: str
    state: str = strawberry.field(description="queued, running, succeeded, failed or cancelled")
    progress: float = strawberry.field(description="Fraction done, 0 to 1")
    error: str | None
    result: JSON | None
    params: JSON | None = None
    requested_by: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def from_record(cls, job: JobRecord) -> Job:
        return cls(
            id=strawberry.ID(job.id),
            kind=job.kind,
            state=job.state.value,
            progress=job.progress,
            error=job.error,
            result=job.result,
            params=JSON(job.params),
            requested_by=job.requested_by,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )

    @classmethod
    def from_event(cls, event: dict[str, Any], previous: Job | None = None) -> Job:
        """A job from a ``Job`` event of the workers (fields the event lacks are kept from ``previous``)."""
        return cls(
            id=strawberry.ID(str(event["id"])),
            kind=str(event.get("kind") or (previous.kind if previous else "")),
            state=str(event["state"]),
            progress=float(event.get("progress") or 0.0),
            error=event.get("error"),
            result=event.get("result"),
            params=previous.params if previous else None,
            requested_by=previous.requested_by if previous else None,
            created_at=previous.created_at if previous else None,
            started_at=previous.started_at if previous else None,
            finished_at=previous.finished_at if previous else None,
        )


@strawberry.type(description="One audited change: who, when, what, and the document before and after.")
class AuditEntry:
    id: strawberry.ID
    at: datetime
    actor: str
    action: str
    kind: str | None
    namespace: str | None
    name: str | None
    before: JSON | None
    after: JSON | None

    @classmethod
    def from_record(cls, entry: AuditRecord) -> AuditEntry:
        return cls(
            id=strawberry.ID(str(entry.id)),
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            kind=entry.kind,
            namespace=entry.namespace,
            name=entry.name,
            before=None if entry.before is None else JSON(entry.before),
            after=None if entry.after is None else JSON(entry.after),
        )


@strawberry.type
class AuditEdge:
    node: AuditEntry
    cursor: str


@strawberry.type(description="A page of the audit log, newest first.")
class AuditConnection:
    edges: list[AuditEdge]
    page_info: PageInfo
    total_count: int
