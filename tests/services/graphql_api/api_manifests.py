"""Manifests of the storefront scenario used by the API tests (a small, readable subset)."""

from __future__ import annotations

from ringfence.demo import network_set_manifest, tiers_manifest, twilio_integration_manifest

# Each text starts on a new line, so that the tests can join them with ``A + "---" + B``.
TIERS = "\n" + tiers_manifest()

TWILIO = "\n" + network_set_manifest("public-ips", {"type": "public"}, ["0.0.0.0/1", "128.0.0.0/1"])
TWILIO += "---\n" + twilio_integration_manifest(order=10)

BACKEND = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: backend, namespace: storefront}
spec:
  tier: default
  order: 100
  selector: app == 'backend'
  types: [Ingress, Egress]
  ingress:
  - action: Allow
    source: {selector: "app in {'microservice1', 'microservice2'}"}
  egress:
  - action: Allow
    destination: {selector: app == 'logging'}
"""

STAGED_FRONTEND = """
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: frontend, namespace: storefront}
spec:
  stagedAction: Set
  tier: default
  order: 200
  selector: app == 'frontend'
  types: [Egress]
  egress:
  - action: Allow
    destination: {selector: "app in {'microservice1', 'microservice2'}"}
"""

SECURITY_POLICY = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.known-bad-actors}
spec:
  tier: security
  order: 1
  types: [Egress]
  egress:
  - action: Deny
    destination: {nets: [192.0.2.0/24]}
"""

NETWORK_SET = """
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata:
  name: partners
  namespace: storefront
  labels: {role: partner}
spec:
  nets: [198.51.100.0/24]
  allowedEgressDomains: [api.partner.example]
"""


def namespaced_policy(name: str, namespace: str, tier: str = "default", *, staged: bool = False) -> str:
    """A minimal (Staged)NetworkPolicy document."""
    kind = "StagedNetworkPolicy" if staged else "NetworkPolicy"
    return f"""
apiVersion: projectcalico.org/v3
kind: {kind}
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  tier: {tier}
  selector: app == '{name}'
  ingress:
  - action: Allow
"""


def global_policy(name: str, tier: str) -> str:
    """A minimal GlobalNetworkPolicy document."""
    return f"""
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: {tier}.{name}}}
spec:
  tier: {tier}
  selector: all()
  ingress:
  - action: Pass
"""
