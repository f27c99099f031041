"""Ringfence: Kubernetes network-policy automation and flow analytics (pure domain core)."""
