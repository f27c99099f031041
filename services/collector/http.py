"""``POST /ingest/flows``: NDJSON flow records (optionally gzip), stored in one transaction per request.

The format is detected per record unless the query names it (``?format=calico|goldmane|hubble``).

Answers ``{"accepted": N, "rejected": M, "errors": [{"line": n, "error": "..."}, ...]}`` (the first 20
errors; every rejected line is kept in ``flow_rejects``). A request is all or nothing at the storage
level: a body over the configured size is refused with 413 before anything is parsed, and when the
database does not take the batch in time the answer is 503 with ``Retry-After`` and nothing is stored.
A request carrying an ``Idempotency-Key`` header is stored once: a retry gets the first answer back
(with ``Idempotent-Replayed: true``).

:func:`ingest_route` is a plain Starlette route, so the API process can mount it next to GraphQL.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Final

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ringfence.flows.formats import PARSERS
from services.collector.lines import LineSplitter, RawBatch
from services.collector.pipeline import Pipeline
from services.collector.store import DatabaseUnavailableError
from services.common.db.tokens import find_active_token

logger = logging.getLogger(__name__)

Authorize = Callable[[Request], Awaitable[bool]]
"""Decides whether a request may ingest (e.g. checks its bearer token); None: every request may."""

HTTP_SOURCE: Final = "http"
MAX_KEY_LENGTH: Final = 255


class BodyTooLargeError(ValueError):
    """The request body (or what it decompresses to) is over the limit."""


class IngestEndpoint:
    """The request handler, with its limits; build one per process around the process's pipeline."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        max_body_size: int,
        authorize: Authorize | None = None,
        write_timeout: float = 10.0,
        retry_after: int = 5,
        max_concurrent: int = 4,
    ) -> None:
        self.pipeline = pipeline
        self.max_body_size = max_body_size
        self.authorize = authorize
        self.write_timeout = write_timeout
        self.retry_after = retry_after
        self._slots = asyncio.Semaphore(max_concurrent)

    async def handle(self, request: Request) -> Response:
        """Handle one ``POST /ingest/flows``."""
        if self.authorize is not None and not await self.authorize(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        key = request.headers.get("idempotency-key")
        if key is not None and not 0 < len(key) <= MAX_KEY_LENGTH:
            return JSONResponse({"error": f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters"}, 400)
        fmt = request.query_params.get("format") or None
        if fmt is not None and fmt not in PARSERS:
            return JSONResponse({"error": f"unknown format {fmt!r} (one of {', '.join(PARSERS)})"}, 400)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            return JSONResponse({"error": f"unsupported Content-Encoding {encoding!r} (gzip or none)"}, 415)
        try:
            body = await self._read_body(request)
            if encoding == "gzip":
                body = self._gunzip(body)
        except BodyTooLargeError as error:
            return JSONResponse({"error": str(error)}, status_code=413)
        except zlib.error as error:
            return JSONResponse({"error": f"body is not valid gzip: {error}"}, status_code=400)
        # While the database is known to be away, answer quickly instead of holding the client.
        budget = self.write_timeout if self.pipeline.writer.available else min(1.0, self.write_timeout)
        deadline = time.monotonic() + budget
        try:
            async with asyncio.timeout(budget):
                await self._slots.acquire()
        except TimeoutError:
            return self._unavailable("the collector is busy")
        try:
            raw = _batch(body, key)
            chunk = await self.pipeline.parse(raw, fmt=fmt)
            # A hard bound as well: a connection attempt to a hung server must not outlast it. A batch
            # cut off after its commit is answered 503 and found stored when retried with its key.
            async with asyncio.timeout(max(0.0, deadline - time.monotonic()) + 2.0):
                result = await self.pipeline.store(raw, chunk, deadline=deadline)
        except (DatabaseUnavailableError, TimeoutError) as error:
            logger.warning("refusing an ingest request: %s", error or "timed out")
            return self._unavailable("the database is unavailable")
        finally:
            self._slots.release()
        outcome = result.outcome
        headers = {"Idempotent-Replayed": "true"} if result.duplicate else None
        return JSONResponse(
            {"accepted": outcome.accepted, "rejected": outcome.rejected, "errors": outcome.errors}, headers=headers
        )

    def _unavailable(self, reason: str) -> Response:
        return JSONResponse(
            {"error": f"{reason}; nothing was stored, retry later"},
            status_code=503,
            headers={"Retry-After": str(self.retry_after)},
        )

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_size:
            raise BodyTooLargeError(f"body of {declared} bytes is over the limit of {self.max_body_size}")
        parts: list[bytes] = []
        size = 0
        async for part in request.stream():
            size += len(part)
            if size > self.max_body_size:
                raise BodyTooLargeError(f"body is over the limit of {self.max_body_size} bytes")
            parts.append(part)
        return b"".join(parts)

    def _gunzip(self, body: bytes) -> bytes:
        # The limit applies to the decompressed size too: a small bomb must not fill memory.
        inflater = zlib.decompressobj(wbits=31)
        data = inflater.decompress(body, self.max_body_size + 1)
        if len(data) > self.max_body_size or inflater.unconsumed_tail:
            raise BodyTooLargeError(f"decompressed body is over the limit of {self.max_body_size} bytes")
        if not inflater.eof:
            raise zlib.error("truncated gzip stream")
        return data


def _batch(body: bytes, key: str | None) -> RawBatch:
    splitter = LineSplitter()
    lines, offsets, overlong = splitter.feed(body)
    last, last_offset = splitter.finish()
    return RawBatch(HTTP_SOURCE, lines + last, offsets + last_offset, 1, batch_key=key, overlong=frozenset(overlong))


def token_authorizer(pool: asyncpg.Pool, *, ttl: float = 30.0) -> Authorize:
    """Accept ``Authorization: Bearer <token>`` of a stored, unrevoked token of any role but viewer.

    Tokens are stored as their hex SHA-256 (``api_tokens``, as the API stores them); answers are
    remembered for ``ttl`` seconds so a stream of requests costs one lookup.
    """
    known: dict[str, tuple[float, bool]] = {}

    async def authorize(request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        now = time.monotonic()
        cached = known.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = await find_active_token(pool, digest)
        allowed = record is not None and record.role != "viewer"
        if len(known) > 10_000:
            known.clear()
        known[digest] = (now + ttl, allowed)
        return allowed

    return authorize


def ingest_route(endpoint: IngestEndpoint) -> Route:
    """The ``POST /ingest/flows`` route, to mount in any Starlette app."""
    return Route("/ingest/flows", endpoint.handle, methods=["POST"])


def create_app(endpoint: IngestEndpoint, *, ready: Callable[[], bool] | None = None) -> Starlette:
    """The collector's own HTTP app: the ingest route plus ``/healthz`` and ``/readyz``."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        ok = endpoint.pipeline.writer.available if ready is None else ready()
        return JSONResponse({"status": "ok" if ok else "database unavailable"}, status_code=200 if ok else 503)

    return Starlette(
        routes=[
            ingest_route(endpoint),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )
