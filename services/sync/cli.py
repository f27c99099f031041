"""``ringfence sync``: keep Ringfence and a Kubernetes cluster in step."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

from services.common.settings import Settings, SettingsError
from services.sync.kinds import CALICO_API_SERVER, CALICO_CRDS, ClusterKind

CALICO_CHOICES = ("auto", CALICO_API_SERVER, CALICO_CRDS, "none")


@click.command("sync")
@click.option(
    "--read-only/--read-write",
    "read_only",
    default=True,
    show_default=True,
    help="Only import the cluster's state, or also write Ringfence's changes back to the cluster.",
)
@click.option("--dry-run", is_flag=True, help="Print the plan and what would be applied; change nothing.")
@click.option("--once", is_flag=True, help="Run one pass and exit instead of watching.")
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Kubeconfig file [default: in-cluster service account, else $KUBECONFIG or ~/.kube/config].",
)
@click.option("--context", help="Kubeconfig context [default: the current context].")
@click.option(
    "--calico-api",
    type=click.Choice(CALICO_CHOICES),
    default="auto",
    show_default=True,
    help="Where Calico resources are read: the Calico API server (v3, needed to write), the CRDs, or none.",
)
@click.option("--database-url", metavar="URL", help="PostgreSQL [default: $RINGFENCE_DATABASE_URL].")
@click.option(
    "--health-port",
    type=click.IntRange(1, 65535),
    help="Serve /healthz and /readyz on this port while watching.",
)
@click.option(
    "--resync",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds between full passes even when nothing was reported.",
)
def sync(  # noqa: PLR0917 - click passes every option by name
    read_only: bool,
    dry_run: bool,
    once: bool,
    kubeconfig: Path | None,
    context: str | None,
    calico_api: str,
    database_url: str | None,
    health_port: int | None,
    resync: float,
) -> None:
    """Import the cluster's namespaces, workloads and policies into Ringfence and keep them in step.

    \b
    Reads (list + watch) namespaces, pods, services, networking.k8s.io/v1 NetworkPolicies and the
    Calico resources. With --read-write it also writes what users change in Ringfence (tiers,
    policies, staged policies, network sets) back to the cluster with server-side apply (field
    manager `ringfence`). A resource changed on both sides is never silently overwritten: the
    cluster's version wins and the conflict is recorded in the audit log (action sync.conflict).
    """
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as error:
        raise click.UsageError(f"configuration error: {error}") from None
    url = database_url or settings.database_url
    if url is None:
        raise click.UsageError("no database: set RINGFENCE_DATABASE_URL or pass --database-url")
    import kubernetes  # noqa: PLC0415 - heavy imports stay out of `ringfence --help`
    import urllib3  # noqa: PLC0415

    from services.sync.client import ClusterClient, ClusterError, load_api_client  # noqa: PLC0415
    from services.sync.runner import SyncError, select_kinds  # noqa: PLC0415

    try:
        api_client = load_api_client(kubeconfig, context)
    except (kubernetes.config.ConfigException, OSError) as error:
        raise click.UsageError(f"no cluster to sync with: {error}") from None
    client = ClusterClient(api_client)
    host = api_client.configuration.host
    try:
        kinds = select_kinds(client.served_api_versions(), calico_api)
    except (ClusterError, SyncError, OSError, urllib3.exceptions.HTTPError) as error:
        client.close()
        raise click.ClickException(f"cannot use the Kubernetes API at {host}: {error}") from None
    calico = next((kind.api_version for kind in kinds if kind.kind == "Tier"), "none")
    run = _Run(
        url=url,
        kinds=kinds,
        read_write=not read_only,
        dry_run=dry_run,
        once=once,
        health_port=health_port,
        resync=resync,
        header=f"sync {'read-only' if read_only else 'read-write'} with {host} (Calico: {calico})",
    )
    try:
        asyncio.run(_main(client, run))
    finally:
        client.close()


@dataclass(frozen=True, slots=True)
class _Run:
    url: str
    kinds: tuple[ClusterKind, ...]
    read_write: bool
    dry_run: bool
    once: bool
    health_port: int | None
    resync: float
    header: str


async def _main(client: Any, run: _Run) -> None:
    from services.common.db import create_pool  # noqa: PLC0415
    from services.sync.runner import Synchronizer, SyncOptions, SyncStatus  # noqa: PLC0415

    options = SyncOptions(read_write=run.read_write, resync_seconds=run.resync)
    try:
        pool = await create_pool(run.url, min_size=1, max_size=4)
    except (OSError, TimeoutError) as error:
        raise click.ClickException(f"cannot connect to the database: {error}") from None
    try:
        synchronizer = Synchronizer(client, pool, run.kinds, options)
        if run.dry_run or run.once:
            report = await synchronizer.run_once(dry_run=run.dry_run)
            click.echo(_describe(report, synchronizer, header=run.header, dry_run=run.dry_run), nl=False)
            return
        status = SyncStatus()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        click.echo(f"{run.header}: watching; Ctrl-C to stop", err=True)
        health = None
        if run.health_port is not None:
            from services.sync.health import serve_health  # noqa: PLC0415

            health = asyncio.create_task(serve_health(status, run.health_port, stop))
        await synchronizer.run(stop, status, on_pass=_log_pass)
        if health is not None:
            await health
    finally:
        await pool.close()


def _describe(report: Any, synchronizer: Any, *, header: str, dry_run: bool) -> str:
    from services.sync.plan import Action, render_plan  # noqa: PLC0415
    from services.sync.writer import body_of  # noqa: PLC0415

    lines = [render_plan(report.plan, header=f"{header}{' (dry run)' if dry_run else ''}: ")]
    lines.extend(f"  warning: {problem}\n" for problem in report.snapshot.invalid)
    if dry_run:
        bodies = [body_of(item, synchronizer.by_ringfence_kind)[1] for item in report.plan.of(Action.APPLY)]
        if bodies:
            lines.append("# would apply (server-side apply, field manager ringfence):\n")
            lines.append("---\n".join(yaml.safe_dump(body, sort_keys=False) for body in bodies))
        if report.plan.of(Action.HOLD):
            lines.append("# held changes are written back with --read-write\n")
        return "".join(lines)
    for key, reason in [*report.imported.skipped, *report.written.skipped]:
        lines.append(f"  skipped {key}: {reason}\n")
    for key, reason in report.written.failed:
        lines.append(f"  FAILED {key}: {reason}\n")
    return "".join(lines)


def _log_pass(report: Any) -> None:
    import logging  # noqa: PLC0415

    from services.sync.plan import render_plan  # noqa: PLC0415

    if not report.plan.empty:
        logging.getLogger("services.sync").info("%s", render_plan(report.plan).rstrip())


command = sync
