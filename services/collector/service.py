"""The collector process: file tailers, the HTTP endpoint and flow-store maintenance, stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import uvicorn

from services.collector.http import IngestEndpoint, create_app, token_authorizer
from services.collector.maintenance import compact_forever, maintain_forever
from services.collector.pipeline import ParseMode, Parser, Pipeline, tune_gc
from services.collector.store import FlowWriter
from services.collector.tail import FlowTail
from services.collector.tailer import FileTailer
from services.common.db import create_pool
from services.common.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CollectorOptions:
    """What ``ringfence collector`` was asked to do."""

    database_url: str
    files: tuple[Path, ...]
    listen: bool
    host: str
    port: int
    node_name: str
    fmt: str | None
    parse_mode: ParseMode
    settings: Settings


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the collector stops it with everything else."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def tail_source(node_name: str, path: Path) -> str:
    """The offsets-table name of a tailed file: the node and the absolute path (one DaemonSet pod per node)."""
    return f"tail:{node_name}:{path.absolute()}"


async def run_collector(options: CollectorOptions, stop: asyncio.Event, *, clock: Callable[[], datetime]) -> None:
    """Run until ``stop`` is set; tailers store their last complete batch before returning."""
    settings = options.settings
    tune_gc()
    # min_size 0: start even while the database is away; the writer retries until it is back.
    pool = await create_pool(options.database_url, min_size=0, max_size=2 + len(options.files))
    tail = FlowTail(settings.redis_url)  # publishes stored flows for the API's flowTail (when Redis is set)
    try:
        with Parser(options.parse_mode) as parser:
            writer = FlowWriter(pool, clock=clock)
            pipeline = Pipeline(
                writer,
                parser,
                clock=clock,
                fmt=options.fmt,
                retention_days=settings.retention_days,
                on_commit=tail.hook,
            )
            tailers = [
                FileTailer(
                    path,
                    pipeline,
                    pool,
                    source=tail_source(options.node_name, path),
                    batch_lines=settings.ingest_batch_size,
                    batch_age=settings.ingest_batch_age_seconds,
                )
                for path in options.files
            ]
            server: _Server | None = None
            if options.listen:
                endpoint = IngestEndpoint(
                    pipeline, max_body_size=settings.max_body_size, authorize=token_authorizer(pool)
                )
                config = uvicorn.Config(
                    create_app(endpoint), host=options.host, port=options.port, lifespan="off", log_config=None
                )
                server = _Server(config)
            tasks: list[asyncio.Task[object]] = [asyncio.create_task(tailer.run()) for tailer in tailers]
            tasks.append(
                asyncio.create_task(
                    maintain_forever(pool, clock=clock, retention_days=settings.retention_days, stop=stop)
                )
            )
            tasks.append(asyncio.create_task(compact_forever(pool, clock=clock, stop=stop)))
            if server is not None:
                tasks.append(asyncio.create_task(server.serve()))
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            stop.set()
            for tailer in tailers:
                tailer.stop()
            if server is not None:
                server.should_exit = True
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                    logger.error("collector task failed", exc_info=result)
            del done
    finally:
        await tail.aclose()
        await pool.close()
