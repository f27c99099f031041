"""Realistic Calico Enterprise flow-log lines for the benchmarks, deterministic for a given seed.

A cluster of namespaces and deployments (pods named like ``frontend-864f4fcdfd-2hhv4``) on a set of
nodes; each deployment talks to a few peers (same namespace, other namespaces, kube-dns, public
domains, private networks). Every 5-minute window, each connection is reported by the nodes its
pods run on, at both ends when both are pods, at aggregation level 2 (no IPs or pod names),
with enforced and pending traces through a security tier, a platform tier and the default tier.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

WINDOW = 300


@dataclass(frozen=True)
class Workload:
    namespace: str
    app: str
    hash: str
    labels: list[str]

    @property
    def name_aggr(self) -> str:
        return f"{self.app}-{self.hash}-*"


@dataclass(frozen=True)
class Edge:
    source: Workload
    dest: Workload | None  # None: outside the cluster
    dest_name_aggr: str
    dest_type: str
    port: int
    proto: str
    domains: list[str] | None
    action: str
    hosts: list[str]


def _hex(rng: random.Random, size: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(size))


def build_cluster(rng: random.Random, namespaces: int = 20, apps: int = 10, nodes: int = 30) -> list[Edge]:
    """The connections of a synthetic cluster."""
    hosts = [f"ip-10-0-{index // 250}-{index % 250}.ec2.internal" for index in range(nodes)]
    names = [f"team{index:02d}" for index in range(namespaces)]
    workloads: list[Workload] = []
    for namespace in names:
        for index in range(apps):
            app = f"svc{index:02d}" if index else "frontend"
            pod_hash = _hex(rng, 10)
            labels = [
                f"app={app}",
                f"pod-template-hash={pod_hash}",
                f"projectcalico.org/serviceaccount={app}",
                f"team={namespace}",
                f"version=v{rng.randint(1, 5)}",
            ]
            workloads.append(Workload(namespace, app, pod_hash, sorted(labels)))
    dns = Workload("kube-system", "coredns", _hex(rng, 10), ["k8s-app=kube-dns", "pod-template-hash=x"])
    edges: list[Edge] = []
    for workload in workloads:
        placed = rng.sample(hosts, k=rng.randint(1, 3))
        peers = rng.sample([peer for peer in workloads if peer is not workload], k=4)
        for peer in peers:
            action = "deny" if rng.random() < 0.05 else "allow"
            port = rng.choice([80, 443, 5432, 6379, 8080, 9090])
            edges.append(Edge(workload, peer, peer.name_aggr, "wep", port, "tcp", None, action, placed))
        edges.append(Edge(workload, dns, dns.name_aggr, "wep", 53, "udp", None, "allow", placed))
        if rng.random() < 0.4:
            domains = [rng.choice(["api.twilio.com", "api.stripe.com", "s3.amazonaws.com", "github.com"])]
            edges.append(Edge(workload, None, "pub", "net", 443, "tcp", domains, "allow", placed))
        if rng.random() < 0.2:
            edges.append(Edge(workload, None, "pvt", "net", 5432, "tcp", None, "allow", placed))
    return edges


def _trace(edge: Edge, staged: bool) -> list[str]:
    namespace = edge.source.namespace
    if edge.action == "deny":
        return [
            "0|security|security.known-bad-actors|pass|-1",
            f"1|default|{namespace}/default.{edge.source.app}|deny|-1",
        ]
    trace = ["0|security|security.known-bad-actors|pass|-1", "1|platform|platform.twilio-integration|pass|-1"]
    if staged:
        trace.append(f"2|default|{namespace}/staged:default.{edge.source.app}|allow|{edge.port % 3}")
    else:
        trace.append(f"2|default|{namespace}/default.{edge.source.app}|allow|{edge.port % 3}")
    return trace


def record(edge: Edge, rng: random.Random, start: int, host: str, reporter: str) -> dict[str, object]:
    """One flow-log record of ``edge`` in the window starting at ``start``."""
    dest = edge.dest
    flows = rng.randint(1, 40)
    packets_in, packets_out = rng.randint(flows, flows * 200), rng.randint(flows, flows * 200)
    enforced = _trace(edge, staged=False)
    return {
        "start_time": start,
        "end_time": start + WINDOW,
        "source_ip": None,
        "source_name": "-",
        "source_name_aggr": edge.source.name_aggr,
        "source_namespace": edge.source.namespace,
        "source_port": None,
        "source_type": "wep",
        "source_labels": {"labels": edge.source.labels},
        "dest_ip": None,
        "dest_name": "-",
        "dest_name_aggr": edge.dest_name_aggr,
        "dest_namespace": dest.namespace if dest else "-",
        "dest_port": edge.port,
        "dest_type": edge.dest_type,
        "dest_labels": {"labels": dest.labels} if dest else None,
        "dest_service_namespace": dest.namespace if dest else "-",
        "dest_service_name": dest.app if dest else "-",
        "dest_service_port": "http" if dest else "-",
        "dest_service_port_num": edge.port if dest else None,
        "dest_domains": edge.domains,
        "proto": edge.proto,
        "action": edge.action,
        "reporter": reporter,
        "policies": {
            "all_policies": enforced,
            "enforced_policies": enforced,
            "pending_policies": _trace(edge, staged=True),
            "transit_policies": [],
        },
        "bytes_in": packets_in * rng.randint(60, 1400),
        "bytes_out": packets_out * rng.randint(60, 1400),
        "num_flows": flows,
        "num_flows_started": rng.randint(0, flows),
        "num_flows_completed": rng.randint(0, flows),
        "packets_in": packets_in,
        "packets_out": packets_out,
        "http_requests_allowed_in": 0,
        "http_requests_denied_in": 0,
        "process_name": "-",
        "process_id": "-",
        "tcp_mean_send_congestion_window": 0,
        "tcp_mean_smooth_rtt": 0,
        "original_source_ips": None,
        "host": host,
    }


def generate(count: int, *, end: int, seed: int = 7) -> Iterator[bytes]:
    """``count`` flow-log lines (each with its newline), windows running backwards from ``end``."""
    rng = random.Random(seed)
    edges = build_cluster(rng)
    produced = 0
    start = end - end % WINDOW - WINDOW
    while True:
        for edge in edges:
            for host in edge.hosts:
                reporters = ["src", "dst"] if edge.dest_type == "wep" and edge.action == "allow" else ["src"]
                for reporter in reporters:
                    if produced == count:
                        return
                    yield orjson.dumps(record(edge, rng, start, host, reporter)) + b"\n"
                    produced += 1
        start -= WINDOW
