"""The storefront scenario's resources as the tests write them, built on :mod:`ringfence.demo`.

The demo holds the lab's tiers and the platform team's ``platform.twilio-integration`` policy; the tests
add two bare namespaces (without the demo's ``kubernetes.io/metadata.name`` labels), a public network set
of their own size and whatever else a test needs.
"""

from __future__ import annotations

from collections.abc import Iterable

from ringfence.demo import network_set_manifest

NAMESPACES = """\
apiVersion: v1
kind: Namespace
metadata: {name: storefront, labels: {twilio: allowed}}
---
apiVersion: v1
kind: Namespace
metadata: {name: kube-system}
"""
"""Namespace ``storefront`` (labelled ``twilio=allowed``) and ``kube-system``."""


def public_ips(nets: Iterable[str]) -> str:
    """GlobalNetworkSet ``public-ips``, labelled ``type=public``, holding ``nets``."""
    return network_set_manifest("public-ips", {"type": "public"}, nets)


def documents(*manifests: str) -> str:
    """One multi-document YAML text of ``manifests``, in order."""
    return "---\n".join(manifest.strip("\n") + "\n" for manifest in manifests)
