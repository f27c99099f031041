"""``ringfence up``: the whole platform on this machine, one command, one process group."""

from __future__ import annotations

import os
from pathlib import Path

import click

from services.commands import pass_settings
from services.common.settings import Settings
from services.up.launch import UpError, UpOptions, cluster_config_present, run_up
from services.up.lock import DataDirLockedError


@click.command(name="up")
@click.option(
    "--demo/--no-demo",
    default=False,
    show_default=True,
    help="Load the storefront demo (resources and a day of flow logs) once ready; loading it again adds nothing.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="HTTP port of the API and the ingestion endpoint [default: $RINGFENCE_PORT or 8080].",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--sync/--no-sync",
    "sync",
    default=None,
    help="Run `ringfence sync --read-only` beside the services [default: when a cluster is configured:"
    " in-cluster, $KUBECONFIG or ~/.kube/config].",
)
@pass_settings
def up(settings: Settings, demo: bool, port: int | None, host: str, sync: bool | None) -> None:
    """Run Ringfence locally: API, worker (with beat) and collector as one supervised group.

    \b
    Without RINGFENCE_DATABASE_URL an embedded PostgreSQL is started, without RINGFENCE_REDIS_URL an
    embedded Redis; their data lives in RINGFENCE_DATA_DIR and is reused on the next start. Migrates,
    starts the services, waits until they are ready and prints the GraphQL URL, the ingestion URL, an
    admin token and the data directory. A service that dies is restarted (and `up` gives up, with its
    log, if it keeps dying). Ctrl-C or SIGTERM stops everything.
    """
    if sync is None:
        sync = cluster_config_present(os.environ, Path.home())
    options = UpOptions(host=host, port=port or settings.port, demo=demo, sync=sync)
    try:
        run_up(settings, options, echo=click.echo)
    except (UpError, DataDirLockedError) as error:
        raise click.ClickException(str(error)) from None


command = up
"""What ``services.commands.up`` re-exports to register ``ringfence up``."""
