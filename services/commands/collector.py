"""`ringfence collector`."""

from services.collector.cli import collector_command as command

__all__ = ["command"]
