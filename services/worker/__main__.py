"""``python -m services.worker``: the same as ``ringfence worker``."""

from services.worker.cli import worker

worker(prog_name="ringfence worker")
