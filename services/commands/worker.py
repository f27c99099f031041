"""`ringfence worker`: the Celery worker (with `--beat`, the scheduler too)."""

from services.worker.cli import worker as command

__all__ = ["command"]
