"""Prometheus metrics of the API: requests, latency, GraphQL errors, subscriptions and jobs.

Each app has its own registry, so several apps in one process (tests) do not collide. The job queue's
state (queued and running jobs by kind, and the age of the oldest) is read from the database at each
scrape, so any API replica reports the whole queue; if the read fails, ``ringfence_api_database_up`` is 0
and the job gauges are left out of that answer rather than reporting stale values.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.db import jobs

logger = logging.getLogger(__name__)

_LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_KNOWN_PATHS: Final = frozenset({"/graphql", "/healthz", "/readyz", "/metrics"})
SCRAPE_QUERY_SECONDS: Final = 2.0
"""How long a scrape waits for the job counts (Prometheus' own scrape timeout defaults to 10 s)."""


class ApiMetrics:
    """The API's metrics in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "ringfence_api_requests_total", "HTTP requests served", ("method", "path", "status"), registry=self.registry
        )
        self.latency = Histogram(
            "ringfence_api_request_duration_seconds",
            "Time to answer an HTTP request",
            ("method", "path"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.graphql_errors = Counter(
            "ringfence_api_graphql_errors_total", "GraphQL errors returned, by code", ("code",), registry=self.registry
        )
        self.subscriptions_active = Gauge(
            "ringfence_api_subscriptions_active", "Subscriptions streaming now", ("field",), registry=self.registry
        )
        self.subscriptions = Counter(
            "ringfence_api_subscriptions_total", "Subscriptions started", ("field",), registry=self.registry
        )
        self.websockets_active = Gauge(
            "ringfence_api_websockets_active", "Open WebSocket connections", registry=self.registry
        )
        self.jobs_started = Counter(
            "ringfence_api_jobs_started_total", "Jobs created and enqueued, by kind", ("kind",), registry=self.registry
        )

        self.jobs_unfinished = Gauge(
            "ringfence_jobs_unfinished",
            "Jobs queued or running now, by kind and state",
            ("kind", "state"),
            registry=self.registry,
        )
        self.jobs_oldest = Gauge(
            "ringfence_jobs_oldest_unfinished_seconds",
            "Age of the oldest job queued or running, by kind and state",
            ("kind", "state"),
            registry=self.registry,
        )
        self.database_up = Gauge(
            "ringfence_api_database_up", "1 when this scrape could read the job queue, else 0", registry=self.registry
        )

    async def endpoint(self, request: Request) -> Response:
        """``GET /metrics`` in Prometheus' text format."""
        await self.read_jobs(request.app.state.services.pool)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def read_jobs(self, pool: asyncpg.Pool) -> None:
        """Set the job gauges from the database (cleared, and ``database_up`` 0, when it cannot be read)."""
        self.jobs_unfinished.clear()
        self.jobs_oldest.clear()
        try:
            async with asyncio.timeout(SCRAPE_QUERY_SECONDS):
                counts = await jobs.unfinished(pool)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            logger.warning("metrics: cannot read the job queue: %s", error)
            self.database_up.set(0)
            return
        self.database_up.set(1)
        for count in counts:
            self.jobs_unfinished.labels(count.kind, count.state.value).set(count.count)
            self.jobs_oldest.labels(count.kind, count.state.value).set(count.oldest_seconds)


class MetricsMiddleware:
    """Counts requests and their latency by method, path (known paths only) and status."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            self.metrics.websockets_active.inc()
            try:
                await self.app(scope, receive, send)
            finally:
                self.metrics.websockets_active.dec()
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in _KNOWN_PATHS else "other"
        method = scope["method"]
        status = 500
        started = time.perf_counter()

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            self.metrics.latency.labels(method, path).observe(time.perf_counter() - started)
            self.metrics.requests.labels(method, path, str(status)).inc()
