"""Calico Enterprise ``flows.log`` lines for the storefront's traffic, one 5-minute window at a time.

Each window is a pure function of its start time and the seed, so a window generated twice is
byte-for-byte the same: the demo loader sends one window per request under an idempotency key and
a second run duplicates nothing, whatever the time. Traffic follows a daily curve (peak at 15:00
UTC) with some noise.

Allowed flows are aggregated as Calico does by default (level 2: no IPs, ports of the source or pod
names, only ``name_aggr``), one record per node and reporter; denied flows keep addresses and pod
names (level 1, the default for denied flows).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator, Sequence
from typing import Any, Final

from ringfence.demo.storefront import (
    DENIED_PROBE_TRACE,
    FRONTEND,
    KUBE_DNS,
    KUBE_DNS_SERVICE,
    MICROSERVICE2,
    POD_EDGES,
    PROBED_PORTS,
    THREAT_ADDRESSES,
    THREAT_FEED_SET,
    TWILIO_DOMAIN,
    TWILIO_PEAK_FLOWS,
    TWILIO_REQUEST_BYTES,
    TWILIO_RESPONSE_BYTES,
    PodEdge,
    Workload,
    egress_trace,
    ingress_trace,
)

WINDOW_SECONDS: Final = 300
"""Calico's default flow-log flush interval."""

PROBE_CHANCE: Final = 0.12
"""Chance that a window holds a denied probe from the threat feed."""

_NONE: Final = "-"
_MTU_PAYLOAD: Final = 1_380  # bytes of payload per full-size segment, for packet counts


def demo_windows(now: float, hours: int = 24) -> range:
    """Start times of the complete 5-minute windows of the last ``hours`` before ``now`` (unix seconds)."""
    if hours < 0:
        raise ValueError(f"hours must not be negative, got {hours}")
    end = int(now) // WINDOW_SECONDS * WINDOW_SECONDS
    return range(end - hours * 3600, end, WINDOW_SECONDS)


def storefront_flow_lines(now: float, hours: int = 24, seed: int = 0) -> Iterator[str]:
    """The storefront's flow-log lines for the ``hours`` before ``now``, oldest window first."""
    for start in demo_windows(now, hours):
        yield from storefront_window_lines(start, seed)


def storefront_window_lines(start: int, seed: int = 0) -> list[str]:
    """The JSON lines of the window starting at ``start`` (unix seconds, a multiple of 300)."""
    return [json.dumps(record, separators=(",", ":")) for record in storefront_window_records(start, seed)]


def storefront_window_records(start: int, seed: int = 0) -> list[dict[str, Any]]:
    """The decoded records of one window: every pod-to-pod edge seen by both sides, Twilio, probes."""
    if start % WINDOW_SECONDS:
        raise ValueError(f"a window starts on a multiple of {WINDOW_SECONDS} s, got {start}")
    rng = random.Random(f"storefront:{seed}:{start}")  # noqa: S311 - demo data, not cryptography
    load = daily_load(start)
    window = _Window(start, start + WINDOW_SECONDS)
    records: list[dict[str, Any]] = []
    for edge in POD_EDGES:
        records += window.pod_edge(edge, load, rng)
    flows = _count(TWILIO_PEAK_FLOWS * load, rng)
    if flows:
        records.append(window.twilio(flows, rng))
    if rng.random() < PROBE_CHANCE:
        records.append(window.probe(rng))
    return records


def daily_load(at: int) -> float:
    """Share of the daily peak at unix time ``at``: 1.0 at 15:00 UTC, 0.1 at 03:00 UTC."""
    hour = (at % 86_400) / 3_600
    return 0.55 + 0.45 * math.cos(2 * math.pi * (hour - 15) / 24)


def _count(mean: float, rng: random.Random) -> int:
    return max(0, round(rng.gauss(mean, mean * 0.15)))


def _packets(payload: int, flows: int) -> int:
    return math.ceil(payload / _MTU_PAYLOAD) + 2 * flows if payload else 0


def _split(total: int, shares: Sequence[int]) -> list[int]:
    """``total`` split in proportion to ``shares``, the rounding left to the last part."""
    whole = sum(shares)
    parts = [total * share // whole for share in shares[:-1]]
    return [*parts, total - sum(parts)]


def _nodes(workload: Workload) -> list[tuple[str, int]]:
    """The nodes the workload's pods run on, with how many pods each."""
    counts: dict[str, int] = {}
    for pod in workload.pods:
        counts[pod.node] = counts.get(pod.node, 0) + 1
    return list(counts.items())


def _wep(side: str, workload: Workload, *, pod: int | None = None) -> dict[str, Any]:
    chosen = workload.pods[pod] if pod is not None else None
    return {
        f"{side}_ip": chosen.ip if chosen else None,
        f"{side}_name": chosen.name if chosen else _NONE,
        f"{side}_name_aggr": workload.name_aggr,
        f"{side}_namespace": workload.namespace,
        f"{side}_type": "wep",
        f"{side}_labels": {"labels": workload.flow_labels},
    }


def _service(workload: Workload | None) -> dict[str, Any]:
    if workload is None:
        return {
            "dest_service_namespace": _NONE,
            "dest_service_name": _NONE,
            "dest_service_port": _NONE,
            "dest_service_port_num": None,
        }
    return {
        "dest_service_namespace": workload.namespace,
        "dest_service_name": KUBE_DNS_SERVICE if workload is KUBE_DNS else workload.name,
        "dest_service_port": workload.port_name,
        "dest_service_port_num": workload.port,
    }


def _policies(trace: tuple[str, ...]) -> dict[str, list[str]]:
    # No staged policy exists yet: the pending trace (staged as enforced) equals the enforced one.
    return {
        "all_policies": list(trace),
        "enforced_policies": list(trace),
        "pending_policies": list(trace),
        "transit_policies": [],
    }


class _Window:
    """Builds the records of one window."""

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end

    def _record(self, host: str, reporter: str, action: str, proto: str) -> dict[str, Any]:
        return {
            "start_time": self.start,
            "end_time": self.end,
            "host": host,
            "reporter": reporter,
            "action": action,
            "proto": proto,
        }

    def pod_edge(self, edge: PodEdge, load: float, rng: random.Random) -> list[dict[str, Any]]:
        """The source side's records (one per source node) and the destination side's (one per dest node)."""
        source_pods = len(edge.source.pods)
        if edge.long_lived:
            flows, started, completed = source_pods, 0, 0
        else:
            flows = _count(edge.peak_flows * load * source_pods, rng)
            started = flows
            completed = max(0, flows - rng.randint(0, min(3, flows)))
        if flows == 0:
            return []
        request = _count(edge.request_bytes * load * flows, rng) if edge.long_lived else edge.request_bytes * flows
        response = edge.response_bytes * flows
        records = []
        source_nodes = _nodes(edge.source)
        dest_nodes = _nodes(edge.dest)
        # Each side splits the same connections over its own nodes: both sides add up to the same totals.
        for reporter, nodes, trace in (
            ("src", source_nodes, egress_trace(edge.dest)),
            ("dst", dest_nodes, ingress_trace(edge.dest)),
        ):
            flow_parts = _split(flows, [count for _, count in nodes])
            parts = zip(
                (node for node, _ in nodes),
                flow_parts,
                _split(started, flow_parts),
                _split(completed, flow_parts),
                _split(request, flow_parts),
                _split(response, flow_parts),
                strict=True,
            )
            for node, part_flows, part_started, part_completed, part_request, part_response in parts:
                if part_flows == 0:
                    continue
                sent, received = (part_request, part_response) if reporter == "src" else (part_response, part_request)
                record = self._record(node, reporter, "allow", edge.dest.proto)
                record |= _wep("source", edge.source)
                record["source_port"] = None
                record |= _wep("dest", edge.dest)
                record["dest_port"] = edge.dest.port
                record |= _service(edge.dest)
                record["dest_domains"] = None
                record["policies"] = _policies(trace)
                record |= _counters(
                    sent, received, part_flows, part_started, part_completed, tcp=edge.dest.proto == "tcp", rng=rng
                )
                records.append(record)
        return records

    def twilio(self, flows: int, rng: random.Random) -> dict[str, Any]:
        """microservice2 calling the Twilio API: seen by the source side only (the peer is outside)."""
        pod = MICROSERVICE2.pods[0]
        record = self._record(pod.node, "src", "allow", "tcp")
        record |= _wep("source", MICROSERVICE2)
        record["source_port"] = None
        record |= {
            "dest_ip": None,
            "dest_name": _NONE,
            "dest_name_aggr": "pub",
            "dest_namespace": _NONE,
            "dest_type": "net",
            "dest_labels": None,
            "dest_port": 443,
        }
        record |= _service(None)
        record["dest_domains"] = [TWILIO_DOMAIN]
        record["policies"] = _policies(egress_trace(None))
        completed = max(0, flows - rng.randint(0, 1))
        sent, received = TWILIO_REQUEST_BYTES * flows, TWILIO_RESPONSE_BYTES * flows
        record |= _counters(sent, received, flows, flows, completed, tcp=True, rng=rng)
        return record

    def probe(self, rng: random.Random) -> dict[str, Any]:
        """A threat-feed address knocking on a frontend pod, denied by the security tier."""
        pod_index = rng.randrange(len(FRONTEND.pods))
        pod = FRONTEND.pods[pod_index]
        attempts = rng.randint(1, 4)
        record = self._record(pod.node, "dst", "deny", "tcp")
        record |= {
            "source_ip": rng.choice(THREAT_ADDRESSES),
            "source_name": _NONE,
            "source_name_aggr": THREAT_FEED_SET,
            "source_namespace": _NONE,
            "source_type": "ns",
            "source_labels": {"labels": ["threatfeed=feodo"]},
            "source_port": None,
        }
        record |= _wep("dest", FRONTEND, pod=pod_index)
        record["dest_port"] = rng.choice(PROBED_PORTS)
        record |= _service(None)
        record["dest_domains"] = None
        record["policies"] = _policies(DENIED_PROBE_TRACE)
        record |= _counters(0, 60 * attempts, attempts, attempts, 0, tcp=True, rng=None)
        record["packets_in"] = attempts  # one SYN each, never answered
        return record


def _counters(
    sent: int, received: int, flows: int, started: int, completed: int, *, tcp: bool, rng: random.Random | None
) -> dict[str, Any]:
    """Counters from the reporting side's point of view (``out`` is what it sent), with process and TCP stats."""
    counters: dict[str, Any] = {
        "bytes_in": received,
        "bytes_out": sent,
        "packets_in": _packets(received, flows),
        "packets_out": _packets(sent, flows),
        "num_flows": flows,
        "num_flows_started": started,
        "num_flows_completed": completed,
        "http_requests_allowed_in": 0,
        "http_requests_denied_in": 0,
        "original_source_ips": None,
        "num_original_source_ips": 0,
        "process_name": _NONE,
        "num_process_names": 0,
        "process_id": _NONE,
        "num_process_ids": 0,
        "process_args": [_NONE],
        "num_process_args": 0,
    }
    rtt = round(rng.uniform(180, 900)) if tcp and rng is not None and sent else 0
    counters |= {
        "tcp_mean_send_congestion_window": 10 if rtt else 0,
        "tcp_min_send_congestion_window": 10 if rtt else 0,
        "tcp_mean_smooth_rtt": rtt,
        "tcp_max_smooth_rtt": rtt * 3,
        "tcp_mean_min_rtt": rtt // 2,
        "tcp_max_min_rtt": rtt,
        "tcp_mean_mss": 1_388 if rtt else 0,
        "tcp_min_mss": 1_388 if rtt else 0,
        "tcp_total_retransmissions": 0,
        "tcp_lost_packets": 0,
        "tcp_unrecovered_to": 0,
    }
    return counters
