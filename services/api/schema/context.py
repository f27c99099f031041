"""What every resolver sees: the app's shared services and the authenticated caller."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from services.api.auth import Authenticator
from services.api.metrics import ApiMetrics
from services.api.permissions import Principal, Scope, Verb
from services.api.schema.errors import ForbiddenError, UnauthenticatedError
from services.api.snapshot import Snapshot, SnapshotCache
from services.api.tasks import TaskQueue
from services.common.settings import Settings


@dataclass
class ApiServices:
    """Built once per app (in its lifespan) and shared by every request."""

    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    tasks: TaskQueue
    authenticator: Authenticator
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    snapshots: SnapshotCache = field(default_factory=SnapshotCache)
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run ``coroutine`` in the background, keeping a reference until it finishes."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


@dataclass
class Context:
    """Per request (HTTP) or per connection (WebSocket)."""

    services: ApiServices
    request: Request | WebSocket
    response: Response | WebSocket | None = None
    principal: Principal | None = None
    connection_params: dict[str, Any] | None = None
    cache: dict[Any, Any] = field(default_factory=dict)
    _snapshot: Snapshot | None = None

    @property
    def caller(self) -> Principal:
        if self.principal is None:
            raise UnauthenticatedError("authentication required")
        return self.principal

    def require(self, verb: Verb, scope: Scope, what: str) -> None:
        """Refuse with FORBIDDEN unless the caller may apply ``verb`` in ``scope``."""
        principal = self.caller
        if not principal.can(verb, scope):
            raise ForbiddenError(
                f"{principal.role} token {principal.name!r} may not {verb} {what} ({scope})",
                verb=verb.value,
                tier=scope.tier,
                namespace=scope.namespace,
            )

    async def snapshot(self) -> Snapshot:
        """The resources as of this request (one snapshot per request, so resolvers agree)."""
        if self._snapshot is None:
            self._snapshot = await self.services.snapshots.get(self.services.pool)
        return self._snapshot

    def forget_snapshot(self) -> None:
        """Drop the request's snapshot after a change, so later fields read the new state."""
        self._snapshot = None


Info = StrawberryInfo[Context, None]
