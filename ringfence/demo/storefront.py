"""The storefront cluster of the lab: nodes, pods, services and who talks to whom.

Pure data. Namespace ``storefront`` runs ``frontend``, ``microservice1``, ``microservice2``,
``backend`` and ``logging`` (label ``app=<name>``, Deployment pods named like
``frontend-864f4fcdfd-2hhv4``); ``kube-system`` runs CoreDNS (``k8s-app=kube-dns``). Traffic:
frontend -> both microservices -> backend; every service -> logging; every pod -> kube-dns (UDP 53);
microservice2 -> ``api.twilio.com`` (TCP 443); addresses of a threat feed probe the frontend.

The policy traces are what Calico Enterprise records for this traffic under the guard rails of
:mod:`ringfence.demo.manifests` (no application policy yet, so pods fall to their namespace profile).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

STOREFRONT: Final = "storefront"
KUBE_SYSTEM: Final = "kube-system"
THREAT_FEED_SET: Final = "threatfeed.feodo-tracker"
PUBLIC_SET: Final = "public-ip-range"
TWILIO_DOMAIN: Final = "api.twilio.com"

NODES: Final = (
    "ip-10-0-1-17.us-west-2.compute.internal",
    "ip-10-0-2-43.us-west-2.compute.internal",
)


@dataclass(frozen=True, slots=True)
class Pod:
    """One replica: its full name, address and the node (flow-log ``host``) it runs on."""

    name: str
    ip: str
    node: str


@dataclass(frozen=True, slots=True)
class Workload:
    """A Deployment and the Service in front of it."""

    namespace: str
    name: str  # Deployment and Service name
    labels: tuple[str, ...]  # "k=v" as flow logs write them, pod-template-hash included
    template_hash: str
    pod_suffixes: tuple[str, ...]
    pod_ips: tuple[str, ...]
    pod_nodes: tuple[int, ...]  # index into NODES, per pod
    proto: str  # the protocol the Service serves
    port: int
    port_name: str

    @property
    def name_aggr(self) -> str:
        """The pod-prefix aggregate flow logs carry (``frontend-864f4fcdfd-*``)."""
        return f"{self.name}-{self.template_hash}-*"

    @property
    def pods(self) -> tuple[Pod, ...]:
        """The replicas."""
        return tuple(
            Pod(f"{self.name}-{self.template_hash}-{suffix}", ip, NODES[node])
            for suffix, ip, node in zip(self.pod_suffixes, self.pod_ips, self.pod_nodes, strict=True)
        )

    @property
    def flow_labels(self) -> list[str]:
        """The ``labels`` list of a flow-log endpoint (labels common to every replica)."""
        return [*self.labels, f"pod-template-hash={self.template_hash}"]


def _app(name: str, template_hash: str, pods: dict[str, tuple[str, int]], port: int, port_name: str) -> Workload:
    """A storefront Deployment; ``pods`` maps each pod's name suffix to its address and node index."""
    return Workload(
        namespace=STOREFRONT,
        name=name,
        labels=(f"app={name}",),
        template_hash=template_hash,
        pod_suffixes=tuple(pods),
        pod_ips=tuple(ip for ip, _ in pods.values()),
        pod_nodes=tuple(node for _, node in pods.values()),
        proto="tcp",
        port=port,
        port_name=port_name,
    )


FRONTEND: Final = _app("frontend", "864f4fcdfd", {"2hhv4": ("10.48.1.12", 0), "x9q7k": ("10.48.2.31", 1)}, 80, "http")
MICROSERVICE1: Final = _app(
    "microservice1", "5d8f7c9b6d", {"kq2wz": ("10.48.1.15", 0), "7mfhp": ("10.48.2.36", 1)}, 8080, "http"
)
MICROSERVICE2: Final = _app("microservice2", "6b5c7f9d84", {"tb4xn": ("10.48.2.40", 1)}, 8080, "http")
BACKEND: Final = _app("backend", "6cfbdd589f", {"wvl8s": ("10.48.1.22", 0)}, 9000, "http")
LOGGING: Final = _app("logging", "7f9b8c6d5b", {"p2znc": ("10.48.2.45", 1)}, 24224, "forward")
KUBE_DNS: Final = Workload(
    namespace=KUBE_SYSTEM,
    name="coredns",
    labels=("k8s-app=kube-dns",),
    template_hash="5d78c9869d",
    pod_suffixes=("8vxlq", "ntw5h"),
    pod_ips=("10.48.1.2", "10.48.2.2"),
    pod_nodes=(0, 1),
    proto="udp",
    port=53,
    port_name="dns",
)
KUBE_DNS_SERVICE: Final = "kube-dns"

SERVICES: Final = (FRONTEND, MICROSERVICE1, MICROSERVICE2, BACKEND, LOGGING)
"""The storefront's own workloads."""


@dataclass(frozen=True, slots=True)
class PodEdge:
    """Traffic between two workloads: connections per 5 minutes at the daily peak, bytes per connection."""

    source: Workload
    dest: Workload
    peak_flows: int
    request_bytes: int
    response_bytes: int
    long_lived: bool = False  # a few persistent connections (log shipping) instead of many short ones


POD_EDGES: Final = (
    PodEdge(FRONTEND, MICROSERVICE1, 420, 1_850, 14_200),
    PodEdge(FRONTEND, MICROSERVICE2, 260, 1_400, 6_300),
    PodEdge(MICROSERVICE1, BACKEND, 380, 960, 4_100),
    PodEdge(MICROSERVICE2, BACKEND, 210, 880, 2_700),
    *(PodEdge(service, LOGGING, 2, 410_000, 2_600, long_lived=True) for service in SERVICES if service is not LOGGING),
    *(PodEdge(service, KUBE_DNS, 90, 78, 164) for service in SERVICES),
)
"""Pod-to-pod traffic, recorded by both reporters."""

TWILIO_PEAK_FLOWS: Final = 24
TWILIO_REQUEST_BYTES: Final = 2_300
TWILIO_RESPONSE_BYTES: Final = 5_400

THREAT_ADDRESSES: Final = ("198.51.100.23", "203.0.113.77", "203.0.113.140")
"""Addresses of the threat feed (documentation ranges: illustrative, reachable by no one)."""
PROBED_PORTS: Final = (22, 23, 80, 443, 3389, 6379)

# --- policy traces (Calico Enterprise hit strings) -------------------------------------------

_PASS_DNS: Final = "platform|platform.allow-kube-dns|pass|-1"
_PASS_THREATS: Final = "security|security.block-threatfeed|pass|-1"


def _trace(*hits: str) -> tuple[str, ...]:
    return tuple(f"{index}|{hit}" for index, hit in enumerate(hits))


def _profile(namespace: str) -> str:
    return f"__PROFILE__|__PROFILE__.kns.{namespace}|allow|0"


def egress_trace(dest: Workload | None) -> tuple[str, ...]:
    """The source side's trace of a connection to ``dest`` (None: an address outside the cluster)."""
    if dest is KUBE_DNS:
        return _trace("platform|platform.allow-kube-dns|allow|0")
    return _trace(_PASS_DNS, _profile(STOREFRONT))


def ingress_trace(dest: Workload) -> tuple[str, ...]:
    """The destination side's trace of a connection from a storefront pod to ``dest``."""
    if dest is LOGGING:
        return _trace(_PASS_THREATS, "platform|platform.allow-logging|allow|0")
    return _trace(_PASS_THREATS, _profile(dest.namespace))


DENIED_PROBE_TRACE: Final = _trace("security|security.block-threatfeed|deny|0")
"""The destination side's trace of a connection from a threat-feed address."""
