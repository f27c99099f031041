"""`ringfence get`."""

from services.api.cli import get as command

__all__ = ["command"]
