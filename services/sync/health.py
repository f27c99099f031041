"""``/healthz`` and ``/readyz`` for the sync's Deployment probes.

Healthy: every watch thread is running. Ready: a pass has completed and the last one succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.sync.runner import SyncStatus

HTTP_OK = 200
HTTP_UNAVAILABLE = 503


def health_app(status: SyncStatus) -> Starlette:
    """The probe endpoints over ``status``."""

    async def healthz(_: Request) -> JSONResponse:
        healthy = status.healthy
        return JSONResponse({"status": "ok" if healthy else "failing"}, HTTP_OK if healthy else HTTP_UNAVAILABLE)

    async def readyz(_: Request) -> JSONResponse:
        ready = status.ready
        body = {"status": "ready" if ready else "not ready", **status.describe()}
        return JSONResponse(body, HTTP_OK if ready else HTTP_UNAVAILABLE)

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz)])


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the sync stops it with everything else."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_health(status: SyncStatus, port: int, stop: asyncio.Event, *, host: str = "0.0.0.0") -> None:  # noqa: S104
    """Serve the probes on ``host:port`` until ``stop`` is set."""
    config = uvicorn.Config(health_app(status), host=host, port=port, log_level="warning", lifespan="off")
    server = _Server(config)
    serving = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await serving
