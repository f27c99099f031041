"""The Query root: resources, flows, the board, verdicts, selectors, jobs, the audit log and the caller."""

from __future__ import annotations

import strawberry

from ringfence.engine import EngineError
from ringfence.model import qualified_policy_name
from ringfence.selector import SelectorError, parse_selector
from services.api.documents import NETWORK_SET_KINDS, POLICY_KINDS, POLICY_TYPES
from services.api.schema import flow_fields
from services.api.schema.context import Info
from services.api.schema.errors import BadUserInputError
from services.api.schema.explain import flow_of_input
from services.api.schema.flow_types import FlowConnection, FlowGraph, FlowInput, FlowVerdict, PolicyBoard
from services.api.schema.jobs import AuditConnection, AuditEdge, AuditEntry, Job, PageInfo
from services.api.schema.pagination import MAX_AUDIT_PAGE, check_page_size, decode_cursor, encode_cursor
from services.api.schema.types import (
    Me,
    NetworkSet,
    Policy,
    Resource,
    SelectorCheck,
    Tier,
    policy_sort_key,
    tier_sort_key,
)
from services.api.snapshot import Entry
from services.common.db import audit
from services.common.db import jobs as job_store
from services.common.db.audit import AuditFilter
from services.common.db.resources import CALICO_POLICY_KINDS


@strawberry.type
class Query:
    @strawberry.field(description="Every tier in evaluation order, the implicit default tier included.")
    async def tiers(self, info: Info) -> list[Tier]:
        return await _tiers(info)

    @strawberry.field(description="One tier by name.")
    async def tier(self, info: Info, name: str) -> Tier | None:
        snapshot = await info.context.snapshot()
        entries = {entry.stored.name: entry for entry in snapshot.of_kinds("Tier")}
        for tier in snapshot.tiers():
            if tier.name == name:
                return Tier.from_tier(tier, entries.get(name))
        return None

    @strawberry.field(description="Policies of every kind, in evaluation order within each tier.")
    async def policies(
        self,
        info: Info,
        tier: str | None = None,
        namespace: str | None = None,
        include_staged: bool | None = True,
        kind: str | None = None,
    ) -> list[Policy]:
        snapshot = await info.context.snapshot()
        tier_order = {t.name: position for position, t in enumerate(await _tiers(info))}
        policies = [
            Policy.from_entry(entry)
            for entry in snapshot
            if isinstance(entry.resource, POLICY_TYPES)
            and (tier is None or entry.resource.tier == tier)
            and (namespace is None or entry.stored.namespace == namespace)
            and (include_staged is not False or not entry.resource.staged)
            and (kind is None or entry.stored.kind == kind)
        ]
        return sorted(policies, key=lambda p: (tier_order.get(p.tier, len(tier_order)), *policy_sort_key(p)))

    @strawberry.field(description="One policy by kind, name (as written or tier-qualified) and namespace.")
    async def policy(self, info: Info, kind: str, name: str, namespace: str | None = None) -> Policy | None:
        if kind not in POLICY_KINDS:
            raise BadUserInputError(f"{kind!r} is not a policy kind", field="kind")
        entry = await _find(info, kind, name, namespace)
        return None if entry is None else Policy.from_entry(entry)

    @strawberry.field(description="Network sets: those of the namespace and the global ones (all when no namespace).")
    async def network_sets(self, info: Info, namespace: str | None = None) -> list[NetworkSet]:
        snapshot = await info.context.snapshot()
        return [
            NetworkSet.from_entry(entry)
            for entry in snapshot.of_kinds(*NETWORK_SET_KINDS)
            if namespace is None or entry.stored.namespace in (None, namespace)
        ]

    @strawberry.field(description="Stored resources of a kind (all kinds when none), optionally of one namespace.")
    async def resources(self, info: Info, kind: str | None = None, namespace: str | None = None) -> list[Resource]:
        snapshot = await info.context.snapshot()
        return [
            Resource.from_entry(entry)
            for entry in snapshot
            if (kind is None or entry.stored.kind == kind)
            and (namespace is None or entry.stored.namespace == namespace)
        ]

    @strawberry.field(description="One stored resource by kind, name and namespace.")
    async def resource(self, info: Info, kind: str, name: str, namespace: str | None = None) -> Resource | None:
        entry = await _find(info, kind, name, namespace)
        return None if entry is None else Resource.from_entry(entry)

    flows: FlowConnection = strawberry.field(resolver=flow_fields.flows, description=flow_fields.FLOWS_HELP)
    flow_graph: FlowGraph = strawberry.field(resolver=flow_fields.flow_graph, description=flow_fields.GRAPH_HELP)
    policy_board: PolicyBoard = strawberry.field(resolver=flow_fields.policy_board, description=flow_fields.BOARD_HELP)

    @strawberry.field(description="Evaluate one flow against the stored policies and show the trace.")
    async def explain_flow(self, info: Info, flow: FlowInput) -> FlowVerdict:
        snapshot = await info.context.snapshot()
        record = flow_of_input(flow)
        try:
            verdict = snapshot.engine.evaluate(record)
        except EngineError as error:
            raise BadUserInputError(str(error), field="flow") from None
        return FlowVerdict(
            action=verdict.action,
            staged_action=verdict.staged_action,
            trace=list(verdict.trace),
            staged_trace=list(verdict.staged_trace),
        )

    @strawberry.field(description="Check a selector: ok, or the error and its 0-based position.")
    def validate_selector(self, selector: str) -> SelectorCheck:
        try:
            parsed = parse_selector(selector)
        except SelectorError as error:
            return SelectorCheck(ok=False, error=str(error), position=error.position)
        return SelectorCheck(ok=True, canonical=str(parsed))

    @strawberry.field(description="One job by id.")
    async def job(self, info: Info, id: strawberry.ID) -> Job | None:  # noqa: A002 - the schema's name
        record = await job_store.get(info.context.services.pool, str(id))
        return None if record is None else Job.from_record(record)

    @strawberry.field(description="The audit log, newest first.")
    async def audit_log(
        self,
        info: Info,
        *,
        first: int | None = 50,
        after: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        kind: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
    ) -> AuditConnection:
        first = check_page_size(50 if first is None else first, MAX_AUDIT_PAGE)
        cursor = decode_cursor("audit", after)
        if cursor is not None and not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
            raise BadUserInputError(f"after: {after!r} is not a cursor of this connection", field="after")
        where = AuditFilter(actor=actor, action=action, kind=kind, namespace=namespace, name=name)
        pool = info.context.services.pool
        entries, has_next = await audit.page(
            pool, first=first, before_id=None if cursor is None else int(cursor), where=where
        )
        total = await audit.count(pool, where)
        edges = [AuditEdge(node=AuditEntry.from_record(e), cursor=encode_cursor("audit", str(e.id))) for e in entries]
        return AuditConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=has_next, end_cursor=edges[-1].cursor if edges else None),
            total_count=total,
        )

    @strawberry.field(description="The caller: token name, role, and what it may do where.")
    def me(self, info: Info) -> Me:
        return Me.from_principal(info.context.caller)


async def _tiers(info: Info) -> list[Tier]:
    snapshot = await info.context.snapshot()
    entries = {entry.stored.name: entry for entry in snapshot.of_kinds("Tier")}
    return sorted((Tier.from_tier(tier, entries.get(tier.name)) for tier in snapshot.tiers()), key=tier_sort_key)


async def _find(info: Info, kind: str, name: str, namespace: str | None) -> Entry | None:
    snapshot = await info.context.snapshot()
    matches = [
        entry
        for entry in snapshot.of_kinds(kind)
        if entry.stored.namespace == (namespace or None)
        and (name in (entry.stored.name, entry.resource.metadata.name) or entry.stored.name == _qualified(entry, name))
    ]
    if len(matches) > 1:
        names = ", ".join(sorted(entry.stored.name for entry in matches))
        raise BadUserInputError(f"{kind} {name!r} is ambiguous ({names}): use the tier-qualified name", field="name")
    return matches[0] if matches else None


def _qualified(entry: Entry, name: str) -> str | None:
    resource = entry.resource
    if isinstance(resource, POLICY_TYPES) and entry.stored.kind in CALICO_POLICY_KINDS:
        return qualified_policy_name(name, resource.tier)
    return None
