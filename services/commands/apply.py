"""`ringfence apply`."""

from services.api.cli import apply as command

__all__ = ["command"]
