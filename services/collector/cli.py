"""The ``ringfence collector`` and ``ringfence ingest`` commands.

Only click is imported here: ``ringfence --help`` loads every command module, so the collector's
machinery is imported when a command runs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import click

from services.common.settings import Settings, SettingsError

FORMATS: Final = click.Choice(["calico", "goldmane", "hubble"])
PARSE_MODES: Final = click.Choice(["inline", "thread", "process"])
DEFAULT_PARSE_MODE: Final = "thread"  # measured best on 2 cores: see services/collector/pipeline.py


def get_settings() -> Settings:
    """The settings from the environment (a service package reads them itself: it may not import the CLI's)."""
    try:
        return Settings.from_env(os.environ)
    except SettingsError as error:
        raise click.UsageError(f"configuration error: {error}") from None


@click.command("ingest")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--format", "fmt", type=FORMATS, default=None, help="Record format [default: detected per record].")
@click.option(
    "--direct",
    is_flag=True,
    help="Write straight to the database at RINGFENCE_DATABASE_URL instead of sending to RINGFENCE_URL.",
)
@click.option("--url", default=None, help="Collector or API base URL [default: $RINGFENCE_URL].")
@click.option("--token", default=None, help="API token [default: $RINGFENCE_TOKEN].")
@click.option("--batch-lines", type=click.IntRange(min=1), default=None, help="Lines per batch.")
@click.option(
    "--attempts",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Tries per batch over HTTP (a restarting server answers 503 or nothing for a while).",
)
@click.option("--parse-mode", type=PARSE_MODES, default=DEFAULT_PARSE_MODE, hidden=True)
@click.option("--progress/--no-progress", default=None, help="Progress bar [default: when stderr is a terminal].")
def ingest_command(  # click passes every parameter by name
    *,
    files: tuple[Path, ...],
    fmt: str | None,
    direct: bool,
    url: str | None,
    token: str | None,
    batch_lines: int | None,
    attempts: int,
    parse_mode: str,
    progress: bool | None,
) -> None:
    """Send flow records from FILE… (- for standard input) through the collector.

    Formats: Calico Enterprise flow logs (flows.log), Goldmane flows and Hubble flows, one JSON
    record per line, detected per record. Prints "accepted N, rejected M" and the first errors; every
    rejected line is kept in the rejects table with its reason. A batch sent again (a retry, the same
    file twice) is stored once.
    """
    from services.collector import ingest_run  # noqa: PLC0415 - see the module docstring
    from services.collector.client import ClientSettings, IngestClientError  # noqa: PLC0415
    from services.collector.pipeline import IngestTotals, ParseMode  # noqa: PLC0415

    settings = get_settings()
    lines = batch_lines or settings.ingest_batch_size
    show = sys.stderr.isatty() if progress is None else progress
    run: Awaitable[IngestTotals]
    if direct:
        if settings.database_url is None:
            raise click.UsageError("--direct needs RINGFENCE_DATABASE_URL")
        run = ingest_run.ingest_direct(
            settings, files, fmt=fmt, batch_lines=lines, parse_mode=ParseMode(parse_mode), show=show
        )
    else:
        client = ClientSettings(url or settings.url, token or settings.token, max_attempts=attempts, fmt=fmt)
        run = ingest_run.ingest_http(
            client, files, batch_lines=lines, batch_age=settings.ingest_batch_age_seconds, show=show
        )
    try:
        totals = asyncio.run(run)
    except IngestClientError as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:
        raise click.ClickException(f"cannot ingest: {error}") from None
    ingest_run.report(totals)


@click.command("collector")
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Flow-log file to tail, e.g. /var/log/calico/flowlogs/flows.log (repeatable).",
)
@click.option("--listen/--no-listen", default=True, help="Serve POST /ingest/flows.")
@click.option("--host", default="0.0.0.0", help="Address to listen on.")  # noqa: S104 - a server's default
@click.option("--port", type=click.IntRange(1, 65535), default=8081, show_default=True, help="HTTP port.")
@click.option("--node-name", default=None, help="Names this node's files in the offsets table [default: host name].")
@click.option("--format", "fmt", type=FORMATS, default=None, help="Record format [default: detected per record].")
@click.option("--parse-mode", type=PARSE_MODES, default=DEFAULT_PARSE_MODE, hidden=True)
def collector_command(
    *,
    files: tuple[Path, ...],
    listen: bool,
    host: str,
    port: int,
    node_name: str | None,
    fmt: str | None,
    parse_mode: str,
) -> None:
    """Run the collector: tail flow-log files and serve POST /ingest/flows into RINGFENCE_DATABASE_URL.

    Each file's position is kept in the database, so a restart continues after the last stored line;
    rotation (rename and a new file) and truncation are followed. Creates daily partitions ahead and
    drops those past RINGFENCE_RETENTION_DAYS.
    """
    from services.collector.ingest_run import utc_now  # noqa: PLC0415 - see the module docstring
    from services.collector.pipeline import ParseMode  # noqa: PLC0415
    from services.collector.service import CollectorOptions, run_collector  # noqa: PLC0415

    settings = get_settings()
    if settings.database_url is None:
        raise click.UsageError("the collector needs RINGFENCE_DATABASE_URL")
    if not files and not listen:
        raise click.UsageError("nothing to do: give --file or --listen")
    options = CollectorOptions(
        database_url=settings.database_url,
        files=tuple(path.absolute() for path in files),
        listen=listen,
        host=host,
        port=port,
        node_name=node_name or socket.gethostname(),
        fmt=fmt,
        parse_mode=ParseMode(parse_mode),
        settings=settings,
    )
    asyncio.run(_until_signalled(lambda stop: run_collector(options, stop, clock=utc_now)))


async def _until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await main(stop)
