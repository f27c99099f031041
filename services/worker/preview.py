"""The impact preview: every stored flow of a window, evaluated before and after a change set.

Parameters (the job's ``params``): ``yaml`` (resources to create or replace; a staged ``Set`` previews
enforcing it, a staged ``Delete`` previews deleting its enforced twin), ``deletes`` (``[{kind,
namespace, name}]``), ``from`` and ``to`` (ISO 8601, optional: the whole store when absent).

Speed: PostgreSQL groups the window's records by evaluation key (``flow_keys``), and each key is
evaluated once per engine. So that the first changed flow reaches subscribers within a second however
large the window, the window is cut into slices by the flow store's per-bucket record counts, the
most recent and smallest first; a key met again in a later slice is not evaluated or reported twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ringfence.engine import (
    FlowChange,
    ImpactSummary,
    NotACalicoEndpointError,
    PolicyEngine,
    apply_changes,
    diff_verdicts,
)
from ringfence.flows.record import Flow
from ringfence.manifests import load_manifests
from ringfence.model import ResourceKey
from services.common.db import flows as flow_store
from services.common.db import statistics as stats_store
from services.common.db.flows import FlowKey
from services.worker.events import flow_key_id, impacted_flow_event, progress_event, summary_event
from services.worker.jobrun import JobRun
from services.worker.state import load_resources

logger = logging.getLogger(__name__)

FIRST_SLICE_RECORDS: Final = 10_000
# After the small first slice, few large ones: every slice groups on its own, so a key seen in several slices is
# fetched and decoded again (bench/preview.py, 1M records: 400k-record slices 2.1-2.7x the one-query grouping,
# 4M-record slices 1.8-1.9x; the first changed flow still at 0.44 s).
SLICE_RECORDS: Final = 4_000_000
FIRST_BATCH: Final = 64
BATCH: Final = 4_000
MAX_STORED_CHANGES: Final = 1_000
_QUEUE_CHUNKS: Final = 8
_STOP_SECONDS: Final = 5.0
_BUCKET: Final = timedelta(seconds=stats_store.BUCKET_SECONDS)


class PreviewInputError(ValueError):
    """The change set or the window of a preview is malformed."""


@dataclass(frozen=True, slots=True)
class Slice:
    """A part of the window, ``[start, end)`` (None: unbounded), with the records it holds (estimated)."""

    start: datetime | None
    end: datetime | None
    records: int


def plan_slices(
    buckets: dict[datetime, int], from_: datetime | None, to: datetime | None, *, first: int, rest: int
) -> list[Slice]:
    """Cut ``[from_, to)`` along 5-minute buckets, newest first: about ``first`` records, then ``rest`` each.

    The slices cover the whole window (the oldest is open-ended when ``from_`` is None), so records
    the bucket counts do not know of yet are still found.
    """
    slices: list[Slice] = []
    end = to
    target = first
    pending = 0
    for bucket, count in sorted(buckets.items(), reverse=True):
        pending += count
        start = bucket if from_ is None else max(bucket, from_)
        if pending < target or (end is not None and start >= end):
            continue
        slices.append(Slice(start, end, pending))
        end, pending, target = start, 0, rest
    if not slices or end is None or from_ is None or end > from_:
        slices.append(Slice(from_, end, pending))
    return slices


def parse_window(params: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """The ``from`` and ``to`` of the params as aware datetimes (UTC when no offset is given)."""
    return _moment(params.get("from"), "from"), _moment(params.get("to"), "to")


def _moment(value: object, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PreviewInputError(f"{name} must be an ISO 8601 time, not {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise PreviewInputError(f"{name} is not an ISO 8601 time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_deletes(params: dict[str, Any]) -> list[ResourceKey]:
    """The resources the change set deletes."""
    deletes: list[ResourceKey] = []
    for item in params.get("deletes") or []:
        if not isinstance(item, dict) or not item.get("kind") or not item.get("name"):
            raise PreviewInputError(f"a delete needs a kind and a name, got {item!r}")
        deletes.append(ResourceKey(str(item["kind"]), item.get("namespace") or None, str(item["name"])))
    return deletes


@dataclass(slots=True)
class _Tally:
    examined: int = 0
    records: int = 0
    skipped: int = 0
    changes: list[dict[str, Any]] | None = None
    newly_denied: int = 0
    newly_allowed: int = 0
    uncertain: int = 0

    def count(self, change: FlowChange) -> None:
        if change.kind == "newly_denied":
            self.newly_denied += 1
        elif change.kind == "newly_allowed":
            self.newly_allowed += 1
        else:
            self.uncertain += 1

    def summary(self) -> ImpactSummary:
        changed = self.newly_denied + self.newly_allowed + self.uncertain
        return ImpactSummary(self.examined, changed, self.newly_denied, self.newly_allowed, self.uncertain)


async def run_preview(run: JobRun) -> dict[str, Any]:
    """The body of the ``ringfence.preview`` task; returns the summary stored as the job's result."""
    params = run.params
    from_, to = parse_window(params)
    text = str(params.get("yaml") or "")
    upserts = load_manifests(text) if text.strip() else []
    deletes = parse_deletes(params)
    await run.publish(progress_event(0, 0))
    # PostgreSQL counts and groups the first slice while this process compiles the engines.
    stream = _KeyStream(run, from_, to)
    producer = asyncio.create_task(stream.produce())
    try:
        await asyncio.sleep(0)
        async with run.pool.acquire() as conn:
            current = await load_resources(conn)
        before = PolicyEngine(current)
        after = PolicyEngine(apply_changes(current, upserts, deletes))
        tally = _Tally(changes=[])
        seen: set[str] = set()
        batch: list[tuple[Flow, int]] = []
        batch_size = FIRST_BATCH
        while (chunk := await stream.keys.get()) is not None:
            if isinstance(chunk, BaseException):
                raise chunk
            for key in chunk:
                tally.records += key.records
                identity = flow_key_id(key.flow)
                if identity in seen:
                    continue
                seen.add(identity)
                batch.append((key.flow, key.records))
            # Evaluate once a batch is full, or whenever PostgreSQL has nothing more ready: keys
            # that are waiting for more keys to arrive would only delay their events.
            if batch and (len(batch) >= batch_size or stream.keys.empty()):
                await _evaluate(run, before, after, batch, tally, total_records=stream.total_records)
                batch = []
                batch_size = min(batch_size * 4, BATCH)
        if batch:
            await _evaluate(run, before, after, batch, tally, total_records=stream.total_records)
    finally:
        await _stop(producer)
    summary = tally.summary()
    await run.publish(progress_event(tally.examined, tally.examined))
    event = summary_event(summary, records=tally.records, skipped=tally.skipped)
    await run.publish(event)
    result = dict(event)
    result["changes"] = tally.changes
    result["changesTruncated"] = summary.changed > MAX_STORED_CHANGES
    return result


async def _stop(producer: asyncio.Task[None]) -> None:
    """Cancel the key stream; do not let a slow cancellation (a query being cancelled) hold the job."""
    producer.cancel()
    done, _ = await asyncio.wait({producer}, timeout=_STOP_SECONDS)
    if not done:
        logger.warning("the flow-key stream did not stop within %s s; leaving it to finish", _STOP_SECONDS)
        return
    with contextlib.suppress(asyncio.CancelledError):
        producer.result()


class _KeyStream:
    """The flow keys of the window, slice after slice, in chunks on :attr:`keys` (then None, or an error)."""

    def __init__(self, run: JobRun, from_: datetime | None, to: datetime | None) -> None:
        self.run = run
        self.from_ = from_
        self.to = to
        self.keys: asyncio.Queue[list[FlowKey] | BaseException | None] = asyncio.Queue(maxsize=_QUEUE_CHUNKS)
        self.total_records = 1  # the stored records of the window, once counted (for progress)

    async def produce(self) -> None:
        try:
            buckets = await stats_store.bucket_records(self.run.pool, _floor(self.from_), self.to)
            self.total_records = max(sum(buckets.values()), 1)
            slices = plan_slices(buckets, self.from_, self.to, first=FIRST_SLICE_RECORDS, rest=SLICE_RECORDS)
            size = FIRST_BATCH
            for part in slices:
                async with self.run.pool.acquire() as conn:
                    chunk: list[FlowKey] = []
                    async for key in flow_store.flow_keys(conn, part.start, part.end):
                        chunk.append(key)
                        if len(chunk) >= size:
                            await self.keys.put(chunk)
                            chunk, size = [], min(size * 4, BATCH)
                    if chunk:
                        await self.keys.put(chunk)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - handed to the consumer, which raises it in the task
            await self.keys.put(error)
            return
        await self.keys.put(None)


async def _evaluate(
    run: JobRun,
    before: PolicyEngine,
    after: PolicyEngine,
    batch: Sequence[tuple[Flow, int]],
    tally: _Tally,
    *,
    total_records: int,
) -> None:
    records = {flow_key_id(flow): count for flow, count in batch}
    events: list[dict[str, Any]] = []
    for change in _diff(before, after, [flow for flow, _ in batch], tally):
        tally.count(change)
        event = impacted_flow_event(change, records.get(flow_key_id(change.flow)))
        events.append(event)
        if tally.changes is not None and len(tally.changes) < MAX_STORED_CHANGES:
            tally.changes.append(event)
    tally.examined += len(batch)
    estimated_total = max(int(tally.examined * total_records / max(tally.records, 1)), tally.examined)
    events.append(progress_event(tally.examined, estimated_total))
    await run.publish_many(events)
    await run.checkpoint(min(tally.records / total_records, 0.99))


def _diff(before: PolicyEngine, after: PolicyEngine, flows: list[Flow], tally: _Tally) -> Iterable[FlowChange]:
    try:
        return list(diff_verdicts(before, after, flows))
    except NotACalicoEndpointError:
        # A record evaluated on a side that is not a Calico endpoint (a malformed log): skip it alone.
        changes: list[FlowChange] = []
        for flow in flows:
            try:
                changes.extend(diff_verdicts(before, after, [flow]))
            except NotACalicoEndpointError:
                tally.skipped += 1
        return changes


def _floor(moment: datetime | None) -> datetime | None:
    """The start of the 5-minute bucket holding ``moment``."""
    if moment is None:
        return None
    seconds = int(moment.timestamp())
    return datetime.fromtimestamp(seconds - seconds % int(_BUCKET.total_seconds()), UTC)
