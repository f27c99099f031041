"""The JSON events of impact previews, shaped like the GraphQL types they become.

``ImpactProgress {processed, total}``, ``ImpactedFlow {key, change, flow, before, after, beforeTrace,
afterTrace, uncertain}`` and ``ImpactSummary {examined, changed, newlyDenied, newlyAllowed, uncertain}``,
each with ``type`` naming the GraphQL type; flow fields are those of the GraphQL ``Flow`` in camelCase.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from ringfence.engine import FlowChange, ImpactSummary
from ringfence.flows.hits import format_hit
from ringfence.flows.record import Flow


def flow_key_id(flow: Flow) -> str:
    """A stable id of the facts that evaluation reads (not the counters or times): dedupes events."""
    facts = (
        flow.reporter.value,
        flow.action.value,
        flow.proto,
        flow.source,
        flow.dest,
        flow.dest_domains,
        flow.dest_service_namespace,
        flow.dest_service_name,
        flow.dest_service_port,
        flow.dest_service_port_num,
    )
    return hashlib.blake2b(repr(facts).encode(), digest_size=12).hexdigest()


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def flow_payload(flow: Flow, records: int | None = None) -> dict[str, Any]:
    """``flow`` as the GraphQL ``Flow`` type spells it."""
    payload: dict[str, Any] = {
        "startTime": _iso(flow.start_time),
        "endTime": _iso(flow.end_time),
        "reporter": flow.reporter.value,
        "action": flow.action.value,
        "proto": flow.proto,
        "destPort": flow.dest.port,
        "sourceType": flow.source.type.value,
        "sourceNamespace": flow.source.namespace,
        "sourceNameAggr": flow.source.name_aggr,
        "destType": flow.dest.type.value,
        "destNamespace": flow.dest.namespace,
        "destNameAggr": flow.dest.name_aggr,
        "destDomains": list(flow.dest_domains),
        "numFlows": flow.num_flows,
        "bytesIn": flow.bytes_in,
        "bytesOut": flow.bytes_out,
        "policies": [format_hit(hit) for hit in flow.enforced_policies],
        "pendingPolicies": [format_hit(hit) for hit in flow.pending_policies],
        "sourceLabels": [f"{key}={value}" for key, value in flow.source.labels],
        "destLabels": [f"{key}={value}" for key, value in flow.dest.labels],
    }
    if records is not None:
        payload["records"] = records
    return payload


def progress_event(processed: int, total: int) -> dict[str, Any]:
    """``ImpactProgress``: flow keys evaluated so far, of ``total`` (an estimate until the end)."""
    return {"type": "ImpactProgress", "processed": processed, "total": max(total, processed)}


def impacted_flow_event(change: FlowChange, records: int | None = None) -> dict[str, Any]:
    """``ImpactedFlow``: one flow aggregate whose verdict changes, with both verdicts and traces."""
    return {
        "type": "ImpactedFlow",
        "key": flow_key_id(change.flow),
        "change": change.kind,
        "flow": flow_payload(change.flow, records),
        "before": change.before,
        "after": change.after,
        "beforeTrace": list(change.before_trace),
        "afterTrace": list(change.after_trace),
        "uncertain": change.kind == "uncertain",
    }


def summary_event(summary: ImpactSummary, *, records: int, skipped: int = 0) -> dict[str, Any]:
    """``ImpactSummary``: counts of flow aggregates; ``records`` is how many stored records they merge."""
    return {
        "type": "ImpactSummary",
        "examined": summary.examined,
        "changed": summary.changed,
        "newlyDenied": summary.newly_denied,
        "newlyAllowed": summary.newly_allowed,
        "uncertain": summary.uncertain,
        "records": records,
        "skipped": skipped,
    }
