"""`ringfence sync`: keep Ringfence and a Kubernetes cluster in step."""

from services.sync.cli import command

__all__ = ["command"]
