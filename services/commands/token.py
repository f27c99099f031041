"""`ringfence token`."""

from services.api.cli import token as command

__all__ = ["command"]
