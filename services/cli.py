"""The ``ringfence`` command.

The group finds its subcommands in :mod:`services.commands`: each module there defines ``command``,
loaded only when that subcommand runs (or when the help lists them). Adding a command is adding a module.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from typing import Final

import click

import services.commands

COMMANDS_PACKAGE: Final = services.commands.__name__


class CommandsGroup(click.Group):
    """A click group whose commands are the modules of :mod:`services.commands`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        found = {
            module.name.replace("_", "-")
            for module in pkgutil.iter_modules(services.commands.__path__)
            if not module.name.startswith("_")
        }
        return sorted(found | set(super().list_commands(ctx)))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        registered = super().get_command(ctx, cmd_name)
        if registered is not None:
            return registered
        module_name = cmd_name.replace("-", "_")
        if not module_name.isidentifier() or module_name.startswith("_"):
            return None
        try:
            module = importlib.import_module(f"{COMMANDS_PACKAGE}.{module_name}")
        except ModuleNotFoundError as error:
            if error.name == f"{COMMANDS_PACKAGE}.{module_name}":
                return None  # no such command; click reports it
            raise
        command = getattr(module, "command", None)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module.__name__} must define `command`, a click.Command")
        return command


@click.group(
    cls=CommandsGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="ringfence", prog_name="ringfence")
@click.option("-v", "--verbose", count=True, help="Log more: -v for info, -vv for debug.")
def main(verbose: int) -> None:
    """Ringfence: Kubernetes network-policy automation and flow analytics, faithful to Calico.

    \b
    Configuration comes from the environment (and the flags of each command):
      RINGFENCE_DATABASE_URL   PostgreSQL (embedded server when unset, for `up`)
      RINGFENCE_REDIS_URL      Redis (embedded server when unset, for `up`)
      RINGFENCE_BROKER_URL     Celery broker [default: the Redis URL]
      RINGFENCE_PORT           HTTP port of `up` and `api` [default: 8080]
      RINGFENCE_DATA_DIR       data of embedded servers and state [default: ./.data]
      RINGFENCE_ADMIN_TOKEN    admin token accepted by `up` instead of a generated one
      RINGFENCE_URL            API used by client commands [default: http://127.0.0.1:8080]
      RINGFENCE_TOKEN          bearer token of client commands
      RINGFENCE_RETENTION_DAYS           days of flows kept [default: 30]
      RINGFENCE_INGEST_BATCH_SIZE        records per COPY batch [default: 5000]
      RINGFENCE_INGEST_BATCH_AGE         seconds before a partial batch is written [default: 1]
      RINGFENCE_MAX_BODY_SIZE            largest HTTP request body, e.g. 16MiB [default: 16MiB]
    """
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
