"""Shared helpers of the sync tests: resources of every kind, pods, store access (fixtures: sync_fixtures)."""

from __future__ import annotations

from typing import Any

import asyncpg

from ringfence.manifests import load_manifests, resource_to_dict
from ringfence.model import ResourceKey, resource_key
from services.common.db import resources as store
from services.sync.client import ClusterClient
from services.sync.documents import canonical
from services.sync.kinds import KUBERNETES_KINDS, calico_kinds
from services.sync.runner import Synchronizer, SyncOptions

Document = dict[str, Any]

NAMESPACE = {
    "apiVersion": "v1",
    "kind": "Namespace",
    "metadata": {"name": "storefront", "labels": {"twilio": "allowed", "kubernetes.io/metadata.name": "storefront"}},
}
KUBE_SYSTEM = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}

# One resource of every kind Ringfence writes back, with the fields each kind has.
EVERY_WRITABLE_KIND = """
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security, labels: {owner: platform}}
spec: {order: 100, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: public-ips, labels: {type: public}}
spec:
  nets: [0.0.0.0/5, 8.0.0.0/7]
  allowedEgressDomains: ["*.example.com"]
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: partners, namespace: storefront, labels: {role: partner}}
spec: {nets: [203.0.113.0/24]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.block-public, annotations: {owner: platform-team}}
spec:
  tier: security
  order: 10
  selector: all()
  namespaceSelector: twilio == 'allowed'
  types: [Egress]
  egress:
    - action: Allow
      protocol: TCP
      destination: {domains: ["*.twilio.com"], ports: [443]}
    - action: Deny
      destination: {selector: type == 'public', namespaceSelector: global()}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: backend, namespace: storefront}
spec:
  order: 200.5
  selector: app == 'backend'
  ingress:
    - action: Allow
      protocol: TCP
      source:
        selector: app in {'microservice1', 'microservice2'}
      destination: {ports: [8080, "9000:9010"]}
    - action: Allow
      protocol: ICMP
      icmp: {type: 8}
  egress:
    - action: Allow
      protocol: UDP
      destination: {namespaceSelector: projectcalico.org/name == 'kube-system', ports: [53]}
    - action: Pass
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: frontend, namespace: storefront, labels: {ringfence.io/recommended: "true"}}
spec:
  selector: app == 'frontend'
  types: [Ingress, Egress]
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]
  egress: [{action: Allow, destination: {selector: app == 'microservice1'}}]
---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: security.quarantine}
spec:
  tier: security
  stagedAction: Delete
---
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: logging, namespace: storefront}
spec:
  podSelector: {matchLabels: {app: logging}}
  policyTypes: [Ingress]
  ingress:
    - from: [{podSelector: {}}]
      ports: [{protocol: TCP, port: 5140}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-dns, namespace: storefront}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
    - to:
        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
          podSelector: {matchExpressions: [{key: k8s-app, operator: In, values: [kube-dns]}]}
        - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
      ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 1024, endPort: 2048}]
"""


def every_writable_kind() -> dict[ResourceKey, Document]:
    """The resources above as canonical documents, by key."""
    return {
        resource_key(resource): canonical(resource_to_dict(resource))
        for resource in load_manifests(EVERY_WRITABLE_KIND)
    }


def pod(name: str, generate_name: str, labels: dict[str, str], *, namespace: str = "storefront") -> Document:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": generate_name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": generate_name.rstrip("-")}],
        },
        "spec": {"serviceAccountName": labels.get("app", "default"), "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.1"},
    }


def synchronizer(
    client: ClusterClient, db: asyncpg.Connection | asyncpg.Pool, *, read_write: bool = True, **options: Any
) -> Synchronizer:
    """A synchronizer over the double's Kubernetes kinds and Calico API server."""
    kinds = KUBERNETES_KINDS + calico_kinds("projectcalico.org/v3")
    return Synchronizer(client, db, kinds, SyncOptions(read_write=read_write, **options))


async def put(conn: asyncpg.Connection, documents: dict[ResourceKey, Document], *, actor: str = "alice") -> None:
    """Create or replace resources in Ringfence's store, as the API does."""
    changes = [store.ResourceChange(key, document) for key, document in documents.items()]
    await store.apply_changes(conn, changes, actor=actor)


async def stored(conn: asyncpg.Connection | asyncpg.Pool) -> dict[ResourceKey, Document]:
    return {resource.key: resource.document for resource in await store.list_resources(conn)}
