"""Expected errors of the API: each carries a stable ``code`` and details in the GraphQL error extensions.

Resolvers raise these; graphql-core copies ``extensions`` into the response. Anything else raised by
a resolver is unexpected: it is logged with its traceback and masked as ``INTERNAL_SERVER_ERROR``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Final

from graphql import GraphQLError
from services.common.db.resources import Conflict

INTERNAL_ERROR_MESSAGE: Final = "Internal server error; the server log has the details."


class ApiError(Exception):
    """An error the client can act on; ``extensions`` always holds its ``code``."""

    code: ClassVar[str] = "BAD_USER_INPUT"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions: dict[str, Any] = {"code": self.code, **details}


class BadUserInputError(ApiError):
    code = "BAD_USER_INPUT"


class UnauthenticatedError(ApiError):
    code = "UNAUTHENTICATED"


class ForbiddenError(ApiError):
    code = "FORBIDDEN"


class NotFoundError(ApiError):
    code = "NOT_FOUND"


class InvalidManifestError(ApiError):
    """Manifests that do not validate; ``errors`` lists each problem with its document and field path."""

    code = "INVALID_MANIFEST"

    def __init__(self, message: str, errors: Sequence[dict[str, Any]]) -> None:
        super().__init__(message, errors=list(errors))


class InvalidSelectorError(ApiError):
    """A selector that does not parse: ``position`` is the 0-based column, ``field`` where it was written."""

    code = "INVALID_SELECTOR"


class ConflictError(ApiError):
    """A change based on a stale resource version; nothing of the request was applied."""

    code = "CONFLICT"

    @classmethod
    def from_conflicts(cls, conflicts: Sequence[Conflict]) -> ConflictError:
        details = [
            {
                "kind": conflict.key.kind,
                "namespace": conflict.key.namespace,
                "name": conflict.key.name,
                "expectedVersion": None if conflict.expected_version is None else str(conflict.expected_version),
                "actualVersion": None if conflict.actual_version is None else str(conflict.actual_version),
                "message": conflict.message,
            }
            for conflict in conflicts
        ]
        message = "stale resource version, nothing was applied: " + "; ".join(c.message for c in conflicts)
        return cls(message, conflicts=details)


def is_expected(error: GraphQLError) -> bool:
    """Whether ``error`` is meant for the client as is (syntax, validation and :class:`ApiError`)."""
    original = error.original_error
    return original is None or isinstance(original, ApiError | GraphQLError)
