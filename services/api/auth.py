"""Bearer tokens: created once, stored as a SHA-256 digest, resolved to a :class:`Principal` per request.

A token is ``rf_`` followed by 43 URL-safe characters (256 random bits), so a digest without salt is
safe: nobody can enumerate the input space. Lookups are cached for a few seconds per API process;
revoking a token therefore takes effect within :data:`CACHE_SECONDS` (configurable per app).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Final

import asyncpg

from services.api.permissions import Principal, Role, check_grants
from services.common.db import audit, tokens

TOKEN_PREFIX: Final = "rf_"
CACHE_SECONDS: Final = 5.0
_CACHE_LIMIT: Final = 10_000


class AuthenticationError(Exception):
    """The request carries no token, a malformed one, or one that is unknown or revoked."""


def hash_token(token: str) -> str:
    """The hex SHA-256 digest under which ``token`` is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def generate_token() -> str:
    """A fresh random token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def create_token(
    conn: asyncpg.Connection,
    name: str,
    role: str,
    tiers: Sequence[str] = (),
    namespaces: Sequence[str] = (),
    *,
    actor: str = "cli",
    token: str | None = None,
) -> str:
    """Store a new token for ``name`` with ``role`` bound to ``tiers`` and ``namespaces``; return it.

    The token is returned once and only its digest is kept. ``token`` lets a deployment choose the
    secret (``RINGFENCE_ADMIN_TOKEN``). Raises ``ValueError`` for an unknown role or bindings the role
    does not take.
    """
    try:
        parsed_role = Role(role)
    except ValueError:
        choices = ", ".join(item.value for item in Role)
        raise ValueError(f"unknown role {role!r} (expected one of {choices})") from None
    if not name.strip():
        raise ValueError("a token needs a name")
    tier_set, namespace_set = frozenset(tiers), frozenset(namespaces)
    check_grants(parsed_role, tier_set, namespace_set)
    secret = token or generate_token()
    async with conn.transaction():
        record = await tokens.insert_token(
            conn,
            name=name,
            role=parsed_role.value,
            tiers=sorted(tier_set),
            namespaces=sorted(namespace_set),
            token_hash=hash_token(secret),
        )
        await audit.record(
            conn,
            actor=actor,
            action="token.create",
            kind="ApiToken",
            name=name,
            after={
                "id": record.id,
                "role": record.role,
                "tiers": list(record.tiers),
                "namespaces": list(record.namespaces),
            },
        )
    return secret


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value."""
    if not authorization:
        raise AuthenticationError("missing Authorization: Bearer <token> header")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationError("the Authorization header must read 'Bearer <token>'")
    return value.strip()


class Authenticator:
    """Resolves tokens to principals through the database, with a short per-process cache."""

    def __init__(
        self, pool: asyncpg.Pool, *, cache_seconds: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._pool = pool
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, Principal]] = {}

    async def authenticate(self, token: str) -> Principal:
        """The principal ``token`` stands for; raise :class:`AuthenticationError` if there is none."""
        digest = hash_token(token)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        record = await tokens.find_active_token(self._pool, digest)
        if record is None:
            self._cache.pop(digest, None)
            raise AuthenticationError("unknown or revoked token")
        principal = Principal(
            name=record.name,
            role=Role(record.role),
            tiers=frozenset(record.tiers),
            namespaces=frozenset(record.namespaces),
        )
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[digest] = (now, principal)
        return principal
