"""``python -m services.up``: the same as ``ringfence up``."""

from services.up.cli import up

up(prog_name="ringfence up")
