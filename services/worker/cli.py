"""``ringfence worker``: run a Celery worker (and, with ``--beat``, the periodic scheduler) for Ringfence."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import click

from services.common.settings import Settings, SettingsError
from services.worker.celery_app import DEFAULT_QUEUE, WorkerOptions, create_app


def run_worker(
    settings: Settings,
    *,
    beat: bool = False,
    concurrency: int | None = None,
    pool: str = "prefork",
    queue: str = DEFAULT_QUEUE,
    loglevel: str = "INFO",
    options: WorkerOptions | None = None,
    alive_file: Path | None = None,
) -> None:
    """Run a worker in this process until it is stopped (SIGTERM finishes the current tasks first)."""
    options = options or WorkerOptions(queue=queue)
    if alive_file is not None:
        options = dataclasses.replace(options, alive_file=alive_file)
    app = create_app(settings, options)
    argv = [
        "worker",
        f"--loglevel={loglevel}",
        f"--pool={pool}",
        "-Q",
        options.queue,
        "--without-gossip",
        "--without-mingle",
    ]
    if concurrency is not None:
        argv.append(f"--concurrency={concurrency}")
    if beat:
        schedule = Path(settings.data_dir) / "celerybeat-schedule"
        schedule.parent.mkdir(parents=True, exist_ok=True)
        argv += ["--beat", f"--schedule={schedule}"]
    app.worker_main(argv)


@click.command("worker")
@click.option("--beat/--no-beat", default=False, help="Also run the periodic scheduler (one per deployment).")
@click.option("-c", "--concurrency", type=click.IntRange(min=1), help="Worker processes [default: CPU count].")
@click.option(
    "--pool",
    type=click.Choice(["prefork", "solo", "threads"]),
    default="prefork",
    show_default=True,
    help="Celery execution pool.",
)
@click.option("-Q", "--queue", default=DEFAULT_QUEUE, show_default=True, help="Queue to consume.")
@click.option("--loglevel", default="INFO", show_default=True, help="Celery log level.")
@click.option(
    "--alive-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Touch this file every 10 s while the worker's loop runs, and FILE.beat on each tick of --beat (liveness).",
)
def worker(  # noqa: PLR0917 - click passes every option by name
    beat: bool, concurrency: int | None, pool: str, queue: str, loglevel: str, alive_file: Path | None
) -> None:
    """Run a worker: recommendations, staged statistics, impact previews, retention.

    Needs RINGFENCE_DATABASE_URL and RINGFENCE_REDIS_URL (or RINGFENCE_BROKER_URL for the queue,
    Redis or RabbitMQ). Scale out by running more workers against the same database and broker.
    """
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as error:
        raise click.UsageError(str(error)) from None
    if settings.database_url is None:
        raise click.UsageError("RINGFENCE_DATABASE_URL is not set")
    if settings.broker_url is None and settings.redis_url is None:
        raise click.UsageError("set RINGFENCE_REDIS_URL (or RINGFENCE_BROKER_URL)")
    if alive_file is not None and not os.access(alive_file.parent, os.W_OK | os.X_OK):
        raise click.BadParameter(
            f"cannot write in {alive_file.parent} (missing or not writable)", param_hint="'--alive-file'"
        )
    run_worker(
        settings, beat=beat, concurrency=concurrency, pool=pool, queue=queue, loglevel=loglevel, alive_file=alive_file
    )


command = worker
