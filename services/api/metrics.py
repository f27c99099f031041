"""Prometheus metrics of the API: requests, latency, GraphQL errors, subscriptions and jobs.

Each app has its own registry, so several apps in one process (tests) do not collide.
"""

from __future__ import annotations

import time
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_KNOWN_PATHS: Final = frozenset({"/graphql", "/healthz", "/readyz", "/metrics"})


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

    async def endpoint(self, request: Request) -> Response:  # noqa: ARG002 - Starlette endpoint signature
        """``GET /metrics`` in Prometheus' text format."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


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
