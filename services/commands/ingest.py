"""`ringfence ingest`."""

from services.collector.cli import ingest_command as command

__all__ = ["command"]
