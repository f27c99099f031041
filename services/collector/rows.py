"""Flow -> the tuple the staging table takes, with label sets and traces interned by hash.

This runs once per stored record, so it leans on identity caches: the parsers hand out the same
:class:`Endpoint` object and the same trace tuples for repeated values, and each is encoded once.
Interned values are keyed by 64 bits of BLAKE2b over a canonical text, so any process can compute
the id a label set or trace will have in the database without asking it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from ringfence.flows.hits import format_hit, hit_policy_name, parse_hit
from ringfence.flows.record import Endpoint, Flow, FlowAction, LabelPairs, PolicyHit, Reporter
from services.common.db.flow_copy import ENCODE_ERRORS, encode_row
from services.common.db.flows import StageRow, TraceSet

COUNTER_BITS: Final = 48
"""A counter of one record at or above 2**48 (281 TB, 281 trillion packets) is absurd and refused."""

_CACHE_LIMIT: Final = 65_536

LabelSet = tuple[int, tuple[str, ...]]
"""An interned label set: its id and its sorted ``k=v`` texts."""

EndpointPart = tuple[str, str | None, str | None, str, str | None, int | None, int | None, str | None]


class RowError(ValueError):
    """A parsed flow the store cannot take (an absurd value); ``field`` names the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (RowError, (self.field, self.reason))


def hash_id(text: str) -> int:
    """The signed 64-bit id of an interned value's canonical text."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def label_texts(labels: LabelPairs) -> tuple[str, ...]:
    """Labels as the sorted ``k=v`` strings stored in ``label_sets``."""
    return tuple(f"{key}={value}" for key, value in labels)


@lru_cache(maxsize=16_384)
def stored_hit_text(hit: PolicyHit) -> str:
    """The hit string to store: Enterprise form, or Goldmane form when only that reads back to ``hit``."""
    text = format_hit(hit)
    if parse_hit(text) == hit:
        return text
    return format_hit(hit, "goldmane")


def trace_set(enforced: tuple[PolicyHit, ...], pending: tuple[PolicyHit, ...]) -> TraceSet:
    """The interned form of a record's two traces (its id, hit strings and parsed hit rows)."""
    enforced_texts = tuple(stored_hit_text(hit) for hit in enforced)
    pending_texts = tuple(stored_hit_text(hit) for hit in pending)
    # NUL and SOH cannot occur in a hit string (parse_hit accepts DNS names and digits only).
    trace_id = hash_id("\x00".join(enforced_texts) + "\x01" + "\x00".join(pending_texts))
    hits = tuple(
        (is_pending, position, hit.tier, hit.kind, hit.namespace, hit_policy_name(hit), hit.action, hit.rule_index)
        for is_pending, trace in ((False, enforced), (True, pending))
        for position, hit in enumerate(trace)
    )
    return TraceSet(trace_id, enforced_texts, pending_texts, hits)


@dataclass(slots=True)
class EncodedBatch:
    """Rows ready for COPY plus the interned values they reference."""

    rows: list[StageRow]
    label_sets: dict[int, tuple[str, ...]]
    trace_sets: dict[int, TraceSet]
    days: set[int]  # start_time // 86400 of the rows: the daily partitions they need
    copy_data: list[bytes] | None = None
    """Each row as a binary COPY tuple (:mod:`services.common.db.flow_copy`), or None when some row could
    not be encoded here (asyncpg then encodes the rows, and refuses the bad one with its reason)."""
    combinations: set[int] = dataclasses.field(default_factory=set)
    """The Calico fast path's combinations whose label sets and trace this batch holds already."""


class RowEncoder:
    """Encodes flows into staging rows; keep one per process so its caches live across batches."""

    def __init__(self) -> None:
        # id(object) -> (object, encoded): holding the object keeps its id from being reused.
        self._endpoints: dict[int, tuple[Endpoint, EndpointPart, LabelSet | None]] = {}
        self._labels: dict[LabelPairs, tuple[int, tuple[str, ...]]] = {}
        self._traces: dict[tuple[int, int], tuple[object, object, TraceSet | None]] = {}

    def new_batch(self) -> EncodedBatch:
        """An empty batch to :meth:`add` rows to."""
        return EncodedBatch([], {}, {}, set(), [])

    def add(self, batch: EncodedBatch, flow: Flow) -> None:
        """Append ``flow`` to ``batch``; raise :class:`RowError` for absurd values (nothing appended)."""
        counters = (
            flow.num_flows,
            flow.num_flows_started,
            flow.num_flows_completed,
            flow.packets_in,
            flow.packets_out,
            flow.bytes_in,
            flow.bytes_out,
            flow.http_requests_allowed_in,
            flow.http_requests_denied_in,
        )
        if (
            flow.num_flows
            | flow.num_flows_started
            | flow.num_flows_completed
            | flow.packets_in
            | flow.packets_out
            | flow.bytes_in
            | flow.bytes_out
            | flow.http_requests_allowed_in
            | flow.http_requests_denied_in
        ) >> COUNTER_BITS:
            raise _counter_error(counters)
        source, source_labels = self.endpoint(flow.source)
        dest, dest_labels = self.endpoint(flow.dest)
        trace = self.trace(flow.enforced_policies, flow.pending_policies)
        if source_labels is not None:
            batch.label_sets[source_labels[0]] = source_labels[1]
        if dest_labels is not None:
            batch.label_sets[dest_labels[0]] = dest_labels[1]
        trace_id = None
        if trace is not None:
            trace_id = trace.id
            batch.trace_sets[trace_id] = trace
        batch.days.add(flow.start_time // 86_400)
        row = (
            flow.start_time,
            flow.end_time,
            PLAIN[flow.reporter],
            PLAIN[flow.action],
            flow.proto,
            *source,
            *dest,
            flow.dest_domains or None,
            flow.dest_service_namespace,
            flow.dest_service_name,
            flow.dest_service_port,
            flow.dest_service_port_num,
            flow.host,
            *counters,
            trace_id,
        )
        batch.rows.append(row)
        if batch.copy_data is not None:
            try:
                batch.copy_data.append(encode_row(row))
            except ENCODE_ERRORS:
                batch.copy_data = None

    def endpoint(self, endpoint: Endpoint) -> tuple[EndpointPart, LabelSet | None]:
        """The staging columns of one endpoint and its interned label set (None: no labels)."""
        cached = self._endpoints.get(id(endpoint))
        if cached is not None and cached[0] is endpoint:
            return cached[1], cached[2]
        label_set = self._label_set(endpoint.labels) if endpoint.labels else None
        part: EndpointPart = (
            endpoint.type.value,
            endpoint.namespace,
            endpoint.name,
            endpoint.name_aggr,
            endpoint.ip,
            endpoint.port,
            None if label_set is None else label_set[0],
            endpoint.service_account,
        )
        if len(self._endpoints) >= _CACHE_LIMIT:
            self._endpoints.clear()
        self._endpoints[id(endpoint)] = (endpoint, part, label_set)
        return part, label_set

    def _label_set(self, labels: LabelPairs) -> LabelSet:
        cached = self._labels.get(labels)
        if cached is None:
            texts = label_texts(labels)
            # NUL cannot occur in stored text, so it separates the labels unambiguously.
            cached = (hash_id("\x00".join(texts)), texts)
            if len(self._labels) >= _CACHE_LIMIT:
                self._labels.clear()
            self._labels[labels] = cached
        return cached

    def trace(self, enforced: tuple[PolicyHit, ...], pending: tuple[PolicyHit, ...]) -> TraceSet | None:
        """The interned form of a record's two traces (None when both are empty)."""
        if not enforced and not pending:
            return None
        key = (id(enforced), id(pending))
        cached = self._traces.get(key)
        if cached is not None and cached[0] is enforced and cached[1] is pending:
            return cached[2]
        trace = trace_set(enforced, pending)
        if len(self._traces) >= _CACHE_LIMIT:
            self._traces.clear()
        self._traces[key] = (enforced, pending, trace)
        return trace


PLAIN: Final[dict[str, str]] = {member: member.value for member in (*Reporter, *FlowAction)}
"""Enum members as plain strings, as rows carry them (cheaper to pickle and to encode)."""

COUNTER_FIELDS: Final = (  # in row order
    "num_flows",
    "num_flows_started",
    "num_flows_completed",
    "packets_in",
    "packets_out",
    "bytes_in",
    "bytes_out",
    "http_requests_allowed_in",
    "http_requests_denied_in",
)


def _counter_error(counters: tuple[int, ...]) -> RowError:
    for field, value in zip(COUNTER_FIELDS, counters, strict=True):
        if value >> COUNTER_BITS:
            return RowError(field, f"count {value} is absurd (at least 2**{COUNTER_BITS})")
    return RowError("", "absurd counter")  # unreachable: some counter was over the bound
