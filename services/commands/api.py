"""`ringfence api`."""

from services.api.cli import api as command

__all__ = ["command"]
