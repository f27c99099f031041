"""The storefront demo: the lab's starting resources and a day of its flow logs, generated.

>>> from ringfence.manifests import load_manifests
>>> sorted({resource.kind for resource in load_manifests(storefront_manifests())})
['GlobalNetworkPolicy', 'GlobalNetworkSet', 'Namespace', 'Tier']
>>> line = next(storefront_flow_lines(now=1_700_000_000, hours=1))
>>> '"source_name_aggr":"frontend-864f4fcdfd-*"' in line
True

Pure: time is the ``now`` argument and randomness comes from the seed, so the same arguments give
the same text.
"""

from ringfence.demo.flowlog import (
    WINDOW_SECONDS,
    demo_windows,
    storefront_flow_lines,
    storefront_window_lines,
    storefront_window_records,
)
from ringfence.demo.manifests import (
    network_set_manifest,
    storefront_manifests,
    tiers_manifest,
    twilio_integration_manifest,
)

__all__ = [
    "WINDOW_SECONDS",
    "demo_windows",
    "network_set_manifest",
    "storefront_flow_lines",
    "storefront_manifests",
    "storefront_window_lines",
    "storefront_window_records",
    "tiers_manifest",
    "twilio_integration_manifest",
]
