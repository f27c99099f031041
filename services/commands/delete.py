"""`ringfence delete`."""

from services.api.cli import delete as command

__all__ = ["command"]
