"""Calico flow-log records straight to staging rows: the collector's hot path, without a :class:`Flow`.

Most lines a collector sees are Calico flow logs that repeat a few hundred endpoints and traces. For
those, :meth:`CalicoRowReader.add` checks the record's values with the same rules as
:func:`ringfence.flows.formats.parse_calico` and builds the staging row directly from cached,
already-encoded endpoints and traces. It only *accepts*: anything it is not sure of (an endpoint or
trace not seen yet, a value of an unexpected type, anything out of range) makes it answer False, and
the caller takes the full path (``parse_calico`` + :class:`RowEncoder`), which either accepts the
record (and the reader learns its endpoints and trace with :meth:`CalicoRowReader.learn`) or refuses
it with the reason. So both paths accept the same records, produce the same rows, and every reason for
a refusal comes from ``parse_calico`` itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ringfence.flows.formats.errors import FlowRecordError
from ringfence.flows.record import Endpoint, Flow
from services.collector.rows import (
    COUNTER_BITS,
    COUNTER_FIELDS,
    PLAIN,
    EncodedBatch,
    EndpointPart,
    LabelSet,
    RowEncoder,
)
from services.common.db.flows import TraceSet

_CACHE_LIMIT: Final = 65_536

_SOURCE_FIELDS: Final = tuple(
    f"source_{name}" for name in ("type", "name_aggr", "namespace", "name", "labels", "ip", "port")
)
_DEST_FIELDS: Final = tuple(
    f"dest_{name}" for name in ("type", "name_aggr", "namespace", "name", "labels", "ip", "port")
)
# What an absent (or null) counter stands for, in the row order of rows.COUNTER_FIELDS.
_COUNTER_DEFAULTS: Final = (1, 0, 0, 0, 0, 0, 0, 0, 0)
_INT: Final = frozenset({int})

EndpointKey = tuple[Any, ...]
TraceKey = tuple[tuple[Any, ...], tuple[Any, ...]]
_Encoded = tuple[EndpointPart, LabelSet | None]


def _endpoint_key(get: Any, fields: tuple[str, ...]) -> EndpointKey | None:
    """The raw values naming one side's endpoint, or None when they are not of the cacheable shape.

    Equal keys give equal endpoints: only a labels object holding a list (or null) and an integer (or
    null) port are keyed, as ``True == 1`` must not pass for a port and a labels list is another form.
    """
    type_field, aggr_field, namespace_field, name_field, labels_field, ip_field, port_field = fields
    raw_labels = get(labels_field)
    if raw_labels is None:
        labels: tuple[Any, ...] = ()
    elif type(raw_labels) is dict:
        inner = raw_labels.get("labels")
        if type(inner) is not list:
            return None
        labels = tuple(inner)
    else:
        return None
    port = get(port_field)
    if port is not None and type(port) is not int:
        return None
    return (get(type_field), get(aggr_field), get(namespace_field), get(name_field), labels, get(ip_field), port)


def _trace_key(policies: Any) -> TraceKey | None:
    """The raw hit lists of a record's ``policies`` (enforced, pending), or None when not lists."""
    if policies is None:
        return (), ()
    if type(policies) is not dict:
        return None
    if "enforced_policies" in policies or "pending_policies" in policies:
        enforced = policies.get("enforced_policies")
        pending = policies.get("pending_policies")
    else:
        enforced = policies.get("all_policies")
        pending = None
    if enforced is None:
        enforced_key: tuple[Any, ...] = ()
    elif type(enforced) is list:
        enforced_key = tuple(enforced)
    else:
        return None
    if pending is None:
        pending_key: tuple[Any, ...] = ()
    elif type(pending) is list:
        pending_key = tuple(pending)
    else:
        return None
    return enforced_key, pending_key


_FIELD_NAMES: Final = (
    "reporter",
    "action",
    "proto",
    "dest_service_namespace",
    "dest_service_name",
    "dest_service_port",
    "dest_service_port_num",
    "host",
)
_Fields = tuple[tuple[str, str, str], tuple[Any, ...]]
"""(reporter, action, proto) and (domains, service namespace, name, port, port number, host) of a row."""
_UNKNOWN: Final[Any] = object()


def _fields_key(get: Any) -> tuple[Any, ...] | None:
    """The raw values of a record's other fields (domains as a tuple), or None when domains are odd."""
    domains = get("dest_domains")
    if domains is not None:
        if type(domains) is not list:
            return None
        domains = tuple(domains)
    return (*map(get, _FIELD_NAMES), domains)


def _cacheable_fields(key: tuple[Any, ...]) -> bool:
    port_num = key[6]
    if port_num is not None and type(port_num) is not int:
        return False
    return all(value is None or type(value) is str for index, value in enumerate(key[:-1]) if index != 6) and (
        key[-1] is None or all(type(item) is str for item in key[-1])
    )


class CalicoRowReader:
    """Builds staging rows from Calico records whose endpoints and traces it has seen; keep one per process."""

    def __init__(self, encoder: RowEncoder) -> None:
        self._encoder = encoder
        self._endpoints: dict[EndpointKey, _Encoded] = {}
        self._traces: dict[TraceKey, TraceSet | None] = {}
        self._fields: dict[tuple[Any, ...], _Fields] = {}

    def add(self, batch: EncodedBatch, record: dict[str, Any], earliest: int, latest: int) -> bool:
        """Append ``record``'s row to ``batch`` and answer True, or answer False (nothing appended).

        False means "take the full path": the record is new to the reader or not plainly valid. Records
        starting before ``earliest`` or ending after ``latest`` are left to the full path too.
        """
        try:
            return self._add(batch, record, earliest, latest)
        except (FlowRecordError, TypeError):  # an unhashable or odd value: the full path says what is wrong
            return False

    def _add(self, batch: EncodedBatch, record: dict[str, Any], earliest: int, latest: int) -> bool:
        get = record.get
        start = get("start_time")
        end = get("end_time")
        if type(start) is not int or type(end) is not int or start < earliest or end < start or end > latest:
            return False
        if start < 0:
            return False
        source_key = _endpoint_key(get, _SOURCE_FIELDS)
        dest_key = _endpoint_key(get, _DEST_FIELDS)
        if source_key is None or dest_key is None:
            return False
        source = self._endpoints.get(source_key)
        dest = self._endpoints.get(dest_key)
        if source is None or dest is None:
            return False
        trace_key = _trace_key(get("policies"))
        if trace_key is None:
            return False
        trace = self._traces.get(trace_key, _UNKNOWN)
        if trace is _UNKNOWN:
            return False
        service_port_num = get("dest_service_port_num")
        if service_port_num is not None and type(service_port_num) is not int:
            return False  # True == 1 and 80.0 == 80: only an int may meet the cached int
        fields_key = _fields_key(get)
        fields = None if fields_key is None else self._fields.get(fields_key)
        if fields is None:
            return False
        counts: tuple[Any, ...] = tuple(map(get, COUNTER_FIELDS))
        if not _INT.issuperset(map(type, counts)):
            if None not in counts:
                return False
            counts = tuple(
                default if value is None else value for value, default in zip(counts, _COUNTER_DEFAULTS, strict=True)
            )
            if not _INT.issuperset(map(type, counts)):
                return False
        num_flows, started, completed, packets_in, packets_out, bytes_in, bytes_out, allowed, denied = counts
        # Negative counts set the sign bit: one shift tests "all in [0, 2**48)".
        if (
            num_flows | started | completed | packets_in | packets_out | bytes_in | bytes_out | allowed | denied
        ) >> COUNTER_BITS:
            return False
        source_part, source_labels = source
        dest_part, dest_labels = dest
        if source_labels is not None:
            batch.label_sets[source_labels[0]] = source_labels[1]
        if dest_labels is not None:
            batch.label_sets[dest_labels[0]] = dest_labels[1]
        trace_id = None
        if trace is not None:
            trace_id = trace.id
            batch.trace_sets[trace_id] = trace
        batch.days.add(start // 86_400)
        batch.rows.append((start, end, *fields[0], *source_part, *dest_part, *fields[1], *counts, trace_id))
        return True

    def learn(self, record: Mapping[str, Any], flow: Flow) -> None:
        """Remember the endpoints and trace of ``record``, which the full path parsed into ``flow``."""
        get = record.get
        self._learn_endpoint(_endpoint_key(get, _SOURCE_FIELDS), flow.source)
        self._learn_endpoint(_endpoint_key(get, _DEST_FIELDS), flow.dest)
        trace_key = _trace_key(get("policies"))
        if trace_key is not None and trace_key not in self._traces:
            if len(self._traces) >= _CACHE_LIMIT:
                self._traces.clear()
            self._traces[trace_key] = self._encoder.trace(flow.enforced_policies, flow.pending_policies)
        # Only keys of strings, nulls and (checked on look-up) an int port number: a value of another
        # type that compares equal to a cached one (80.0 == 80) must not borrow its result.
        fields_key = _fields_key(get)
        if fields_key is not None and fields_key not in self._fields and _cacheable_fields(fields_key):
            if len(self._fields) >= _CACHE_LIMIT:
                self._fields.clear()
            self._fields[fields_key] = (
                (PLAIN[flow.reporter], PLAIN[flow.action], flow.proto),
                (
                    flow.dest_domains or None,
                    flow.dest_service_namespace,
                    flow.dest_service_name,
                    flow.dest_service_port,
                    flow.dest_service_port_num,
                    flow.host,
                ),
            )

    def _learn_endpoint(self, key: EndpointKey | None, endpoint: Endpoint) -> None:
        if key is None or key in self._endpoints:
            return
        if len(self._endpoints) >= _CACHE_LIMIT:
            self._endpoints.clear()
        self._endpoints[key] = self._encoder.endpoint(endpoint)
