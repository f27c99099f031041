"""The GraphQL schema of the API, code first; ``graphql/schema.graphql`` is exported from it."""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from strawberry.extensions import MaskErrors
from strawberry.types import ExecutionContext

from graphql import GraphQLError
from services.api.limits import Limits
from services.api.schema.errors import INTERNAL_ERROR_MESSAGE, is_expected
from services.api.schema.mutations import Mutation
from services.api.schema.queries import Query
from services.api.schema.subscriptions import Subscription

logger = logging.getLogger("services.api")


class _MaskUnexpectedErrors(MaskErrors):
    """Masks every error not meant for the client, keeping a code so clients can still branch on it."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda error: not is_expected(error), error_message=INTERNAL_ERROR_MESSAGE)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        masked.extensions = {"code": "INTERNAL_SERVER_ERROR"}
        return masked


class RingfenceSchema(strawberry.Schema):
    """Logs unexpected errors with their traceback (expected ones are the client's business) and counts all."""

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        context: Any = execution_context.context if execution_context else None
        metrics = getattr(getattr(context, "services", None), "metrics", None)
        for error in errors:
            expected = is_expected(error)
            if metrics is not None:
                code = (
                    (error.extensions or {}).get("code", "GRAPHQL_VALIDATION_FAILED")
                    if expected
                    else "INTERNAL_SERVER_ERROR"
                )
                metrics.graphql_errors.labels(str(code)).inc()
            if not expected:
                logger.error(
                    "unexpected error at %s: %s",
                    ".".join(str(part) for part in error.path or ()) or "(operation)",
                    error.message,
                    exc_info=error.original_error,
                )


def build_schema(limits: Limits | None = None) -> RingfenceSchema:
    """The schema with its limits and error masking."""
    limits = limits or Limits()
    return RingfenceSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[*limits.extensions(), _MaskUnexpectedErrors],
    )


__all__ = ["RingfenceSchema", "build_schema"]
