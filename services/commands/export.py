"""`ringfence export`."""

from services.api.cli import export as command

__all__ = ["command"]
