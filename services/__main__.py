"""``python -m services``: the same as the ``ringfence`` command."""

from services.cli import main

main(prog_name="ringfence")
