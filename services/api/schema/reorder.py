"""``reorderPolicies``: put several policies of a tier in a given evaluation order in one atomic change."""

from __future__ import annotations

import dataclasses
from typing import Final

import strawberry

from services.api import changes
from services.api.changes import Change
from services.api.documents import POLICY_TYPES, parse_version
from services.api.schema.context import Info
from services.api.schema.errors import BadUserInputError
from services.api.schema.types import Policy
from services.api.snapshot import Entry

REORDER_HELP: Final = (
    "Evaluate the listed policies of a tier in the listed sequence, all or none. Without start they exchange "
    "the orders they hold between them (so policies not listed keep their places); with start they are "
    "numbered start, start + step, ... Only Calico policies (and their staged kinds) have an order."
)
MAX_REORDER: Final = 500


@strawberry.input(description="A policy by kind, name and namespace; with resourceVersion, only at that version.")
class PolicyRef:
    kind: str
    name: str
    namespace: str | None = None
    resource_version: str | None = None


async def reorder_policies(
    info: Info,
    tier: str,
    order: list[PolicyRef],
    start: float | None = None,
    step: float = 100.0,
) -> list[Policy]:
    if not order:
        raise BadUserInputError("order must name at least one policy", field="order")
    if len(order) > MAX_REORDER:
        raise BadUserInputError(f"order names more than {MAX_REORDER} policies", field="order")
    if step <= 0:
        raise BadUserInputError("step must be positive", field="step")
    pool = info.context.services.pool
    entries: list[Entry] = []
    expected: list[int] = []
    for index, ref in enumerate(order):
        where = f"order[{index}]"
        entry = await changes.stored_entry(pool, ref.kind, ref.name, ref.namespace or None)
        resource = entry.resource
        if not isinstance(resource, POLICY_TYPES) or not hasattr(resource.spec, "order"):
            raise BadUserInputError(f"{entry.stored.key} has no order (Calico policies have)", field=where)
        if resource.tier != tier:
            raise BadUserInputError(f"{entry.stored.key} is in tier {resource.tier!r}, not {tier!r}", field=where)
        if any(seen.stored.key == entry.stored.key for seen in entries):
            raise BadUserInputError(f"{entry.stored.key} is listed twice", field=where)
        try:
            version = parse_version(ref.resource_version)
        except ValueError as error:
            raise BadUserInputError(str(error), field=f"{where}.resourceVersion") from None
        entries.append(entry)
        expected.append(entry.stored.resource_version if version is None else version)
    orders = _new_orders([entry.resource.spec.order for entry in entries], start, step)  # type: ignore[union-attr]
    change_list = [
        Change(
            entry.stored.key,
            dataclasses.replace(entry.resource, spec=dataclasses.replace(entry.resource.spec, order=new)),  # type: ignore[arg-type,type-var]
            version,
            action="reorder",
        )
        for entry, version, new in zip(entries, expected, orders, strict=True)
        if entry.resource.spec.order != new  # type: ignore[union-attr]
    ]
    applied: dict[object, Entry | None] = {}
    if change_list:
        async with pool.acquire() as conn:
            results = await changes.apply(conn, info.context.caller, change_list)
        info.context.forget_snapshot()
        applied = {change.key: result for change, result in zip(change_list, results, strict=True)}
    return [Policy.from_entry(applied.get(entry.stored.key) or entry) for entry in entries]


def _new_orders(current: list[float | None], start: float | None, step: float) -> list[float]:
    if start is not None:
        return [start + index * step for index in range(len(current))]
    slots = [order for order in current if order is not None]
    if len(slots) < len(current) or len(set(slots)) < len(slots):
        raise BadUserInputError(
            "some of these policies have no order or share one, so they have no slots to exchange: give start "
            "(and step) to number them",
            field="start",
        )
    return sorted(slots)
