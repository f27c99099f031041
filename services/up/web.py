"""The HTTP server of ``ringfence up``: the API and the collector's ingestion endpoint on one port.

A deployment runs ``ringfence api`` and ``ringfence collector`` apart; on one machine ``up`` serves
both behind one address, so that ``RINGFENCE_URL`` works for every client command (``ingest`` posts to
``/ingest/flows``, the rest to ``/graphql``). Requests under ``/ingest/`` go to the collector's app,
everything else to the API; both apps' lifespans run (their pools open at startup, close at shutdown).

Run as ``python -m services.up.web --host H --port P``, with the settings in the environment.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import click
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from services.common.settings import Settings

logger = logging.getLogger(__name__)

INGEST_PREFIX = "/ingest/"
INGEST_PATH = "/ingest/flows"


class PathDispatch:
    """An ASGI app sending each request to the first app whose path prefix matches, else to ``default``.

    Lifespan events start every app's lifespan in order and stop them in reverse order.
    """

    def __init__(self, default: Starlette, routes: Sequence[tuple[str, Starlette]]) -> None:
        self.default = default
        self.routes = tuple(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope.get("path", "")
        for prefix, app in self.routes:
            if path.startswith(prefix):
                await app(scope, receive, send)
                return
        await self.default(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _lifespans(self) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for app in (self.default, *(app for _, app in self.routes)):
                await stack.enter_async_context(app.router.lifespan_context(app))
            yield

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        try:
            async with self._lifespans():
                await send({"type": "lifespan.startup.complete"})
                message = await receive()
                assert message["type"] == "lifespan.shutdown"
        except Exception as error:
            logger.exception("the server's lifespan failed")
            failed = "lifespan.shutdown.failed" if message["type"] == "lifespan.shutdown" else "lifespan.startup.failed"
            await send({"type": failed, "message": f"{type(error).__name__}: {error}"})
            return
        await send({"type": "lifespan.shutdown.complete"})


def create_up_app(settings: Settings) -> PathDispatch:
    """The API with the collector's ``/ingest/flows`` beside it."""
    from services.api.app import create_app  # noqa: PLC0415 - heavy imports only in the server process

    return PathDispatch(create_app(settings), [(INGEST_PREFIX, create_ingest_app(settings))])


def create_ingest_app(settings: Settings) -> Starlette:
    """``POST /ingest/flows`` with the collector's pipeline, open for the tokens that may write.

    A viewer token reads only, so it may not ingest; every other role may.
    """
    from services.api.auth import AuthenticationError, Authenticator, bearer_token  # noqa: PLC0415
    from services.api.permissions import Role  # noqa: PLC0415
    from services.collector.http import IngestEndpoint  # noqa: PLC0415
    from services.collector.pipeline import Parser, Pipeline  # noqa: PLC0415
    from services.collector.store import FlowWriter  # noqa: PLC0415
    from services.collector.tail import FlowTail  # noqa: PLC0415
    from services.common.db import create_pool  # noqa: PLC0415

    if settings.database_url is None:
        raise ValueError("RINGFENCE_DATABASE_URL is not set: ingestion needs a database")
    database_url = settings.database_url
    state: dict[str, IngestEndpoint] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        pool = await create_pool(database_url, min_size=1, max_size=4)
        authenticator = Authenticator(pool)

        async def authorize(request: Request) -> bool:
            try:
                principal = await authenticator.authenticate(bearer_token(request.headers.get("authorization")))
            except AuthenticationError:
                return False
            return principal.role is not Role.VIEWER

        clock = _utc_now
        tail = FlowTail(settings.redis_url)  # stored flows reach the API's flowTail subscribers
        with Parser() as parser:
            pipeline = Pipeline(
                FlowWriter(pool, clock=clock),
                parser,
                clock=clock,
                retention_days=settings.retention_days,
                on_commit=tail.hook,
            )
            state["endpoint"] = IngestEndpoint(pipeline, max_body_size=settings.max_body_size, authorize=authorize)
            try:
                yield
            finally:
                state.clear()
                await tail.aclose()
                await pool.close()

    async def ingest(request: Request) -> Response:
        endpoint = state.get("endpoint")
        if endpoint is None:
            return JSONResponse({"error": "starting or stopping; retry"}, status_code=503, headers={"Retry-After": "1"})
        return await endpoint.handle(request)

    # The collector's own route object needs the endpoint, which exists only once the pool is open.
    return Starlette(routes=[Route(INGEST_PATH, ingest, methods=["POST"])], lifespan=lifespan)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), required=True)
def main(host: str, port: int) -> None:
    """Serve the API and the ingestion endpoint (settings from the environment)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env(os.environ)
    config = uvicorn.Config(
        create_up_app(settings),
        host=host,
        port=port,
        lifespan="on",
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
