"""A small synchronous GraphQL client of the API, for the command line (``apply``, ``get``, ``delete``, ``export``)."""

from __future__ import annotations

from typing import Any, Final, Self

import httpx

DEFAULT_TIMEOUT: Final = 60.0


class ApiClientError(Exception):
    """The API refused a request or could not be reached; ``code`` is the GraphQL error code when known."""

    def __init__(self, message: str, *, code: str | None = None, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details or []


class ApiClient:
    """Sends GraphQL requests to ``<url>/graphql`` with a bearer token."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def execute(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        """The ``data`` of the request; :class:`ApiClientError` with every error message otherwise."""
        try:
            response = self._http.post("/graphql", json={"query": query, "variables": variables or {}})
        except httpx.HTTPError as error:
            raise ApiClientError(f"cannot reach the API at {self._http.base_url}: {error}") from None
        try:
            body = response.json()
        except ValueError:
            raise ApiClientError(f"the API answered HTTP {response.status_code}: {response.text[:200]}") from None
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            first = errors[0]
            extensions = first.get("extensions") or {}
            details = list(extensions.get("errors") or extensions.get("conflicts") or [])
            message = "; ".join(str(error.get("message")) for error in errors)
            raise ApiClientError(message, code=extensions.get("code"), details=details)
        if response.status_code != 200:
            raise ApiClientError(f"the API answered HTTP {response.status_code}")
        return body.get("data")
