"""The storefront's resources before the lab starts: namespaces, tiers, guard rails and network sets.

The security team owns the ``security`` tier (order 100) and the platform team the ``platform`` tier
(order 200); both end with ``defaultAction: Pass`` so traffic they do not decide reaches the
application policies of the ``default`` tier. The guard rails:

* ``security.block-threatfeed`` denies ingress from the addresses of a threat feed, kept in the
  GlobalNetworkSet ``threatfeed.feodo-tracker`` as Calico Enterprise's GlobalThreatFeed writes it.
  Ingress only: flow logs aggregate external destinations away (no IP), so an egress CIDR rule could
  only ever be judged "uncertain" for them, which would cloud every impact preview of the lab.
* ``platform.allow-kube-dns`` lets every pod query the cluster DNS (UDP and TCP 53).
* ``platform.allow-logging`` lets every namespace ship logs to the logging service (TCP 24224). It
  admits the connection on the logging side only; each sender's egress stays with its own policy.

GlobalNetworkSet ``public-ip-range`` (``type=public``) lists the public IPv4 space (everything but
RFC 1918, and multicast and reserved space above 224.0.0.0), for the platform team's
``platform.twilio-integration`` policy of the lab.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from ringfence.demo.storefront import LOGGING, PUBLIC_SET, THREAT_ADDRESSES, THREAT_FEED_SET

PUBLIC_NETS: Final = (
    "0.0.0.0/5",
    "8.0.0.0/7",
    "11.0.0.0/8",
    "12.0.0.0/6",
    "16.0.0.0/4",
    "32.0.0.0/3",
    "64.0.0.0/2",
    "128.0.0.0/3",
    "160.0.0.0/5",
    "168.0.0.0/6",
    "172.0.0.0/12",
    "172.32.0.0/11",
    "172.64.0.0/10",
    "172.128.0.0/9",
    "173.0.0.0/8",
    "174.0.0.0/7",
    "176.0.0.0/4",
    "192.0.0.0/9",
    "192.128.0.0/11",
    "192.160.0.0/13",
    "192.169.0.0/16",
    "192.170.0.0/15",
    "192.172.0.0/14",
    "192.176.0.0/12",
    "192.192.0.0/10",
    "193.0.0.0/8",
    "194.0.0.0/7",
    "196.0.0.0/6",
    "200.0.0.0/5",
    "208.0.0.0/4",
)
"""IPv4 unicast space outside RFC 1918: 0.0.0.0/0 minus 10/8, 172.16/12, 192.168/16 and 224/3."""

_HEADER: Final = """\
# The storefront lab: namespaces, tiers, guard-rail policies and network sets.
# Loaded by `ringfence up --demo`; apply it yourself with `ringfence apply -f`.
"""

_NAMESPACES: Final = """\
apiVersion: v1
kind: Namespace
metadata:
  name: storefront
  labels:
    kubernetes.io/metadata.name: storefront
    twilio: allowed
---
apiVersion: v1
kind: Namespace
metadata:
  name: kube-system
  labels:
    kubernetes.io/metadata.name: kube-system
"""

_TIERS: Final = """\
apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: security
spec:
  order: 100
  defaultAction: Pass
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: platform
spec:
  order: 200
  defaultAction: Pass
"""

_POLICIES: Final = f"""\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: security.block-threatfeed
spec:
  tier: security
  order: 100
  selector: all()
  types:
    - Ingress
  ingress:
    - action: Deny
      source:
        selector: threatfeed == 'feodo'
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: platform.allow-kube-dns
spec:
  tier: platform
  order: 100
  selector: all()
  types:
    - Egress
  egress:
    - action: Allow
      protocol: UDP
      destination:
        selector: k8s-app == 'kube-dns'
        namespaceSelector: projectcalico.org/name == 'kube-system'
        ports:
          - 53
    - action: Allow
      protocol: TCP
      destination:
        selector: k8s-app == 'kube-dns'
        namespaceSelector: projectcalico.org/name == 'kube-system'
        ports:
          - 53
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: platform.allow-logging
spec:
  tier: platform
  order: 200
  selector: app == 'logging'
  namespaceSelector: projectcalico.org/name == 'storefront'
  types:
    - Ingress
  ingress:
    - action: Allow
      protocol: TCP
      source:
        namespaceSelector: all()
      destination:
        ports:
          - {LOGGING.port}
"""


def tiers_manifest() -> str:
    """The ``security`` (order 100) and ``platform`` (order 200) tiers, both ``defaultAction: Pass``."""
    return _TIERS


def twilio_integration_manifest(order: int = 300) -> str:
    """The platform team's ``platform.twilio-integration`` GlobalNetworkPolicy, the lab's first change.

    Namespaces labelled ``twilio == 'allowed'`` may open TCP connections to ``*.twilio.com`` and
    nothing else of the public network set (``type == 'public'``). The lab puts it at ``order`` 300.
    """
    return f"""\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: platform.twilio-integration
spec:
  tier: platform
  order: {order}
  namespaceSelector: twilio == 'allowed'
  types:
    - Egress
  egress:
    - action: Allow
      protocol: TCP
      destination:
        domains:
          - '*.twilio.com'
    - action: Deny
      destination:
        selector: type == 'public'
"""


def network_set_manifest(name: str, labels: Mapping[str, str], nets: Iterable[str]) -> str:
    """A GlobalNetworkSet document: ``name``, its ``labels`` (at least one) and its ``nets``."""
    label_lines = "".join(f"    {key}: {value}\n" for key, value in labels.items())
    net_lines = "".join(f"    - {net}\n" for net in nets)
    return (
        "apiVersion: projectcalico.org/v3\n"
        "kind: GlobalNetworkSet\n"
        "metadata:\n"
        f"  name: {name}\n"
        "  labels:\n"
        f"{label_lines}"
        "spec:\n"
        "  nets:\n"
        f"{net_lines}"
    )


def storefront_manifests() -> str:
    """The storefront lab's starting resources as multi-document YAML (``calicoctl apply`` ready)."""
    threat_nets = tuple(f"{address}/32" for address in THREAT_ADDRESSES)
    documents = (
        _NAMESPACES,
        _TIERS,
        network_set_manifest(THREAT_FEED_SET, {"threatfeed": "feodo"}, threat_nets),
        network_set_manifest(PUBLIC_SET, {"type": "public"}, PUBLIC_NETS),
        _POLICIES,
    )
    return _HEADER + "---\n".join(documents)
