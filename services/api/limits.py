"""Limits that keep one request from exhausting the API: depth, aliases, tokens, cost, introspection, body size.

The cost of an operation is counted before it runs: every field costs 1, and a field taking ``first``
multiplies the cost of what it selects by that page size (its default when omitted, the variable's
value when a variable gives it). Introspection is bounded separately: inside ``__schema``/``__type``, lists of
types, fields and arguments may nest at most :data:`MAX_INTROSPECTION_LISTS` deep, which the standard
introspection query (GraphiQL's) needs and a query built to explode the response exceeds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
)

MAX_DEPTH: Final = 12
MAX_ALIASES: Final = 30
MAX_TOKENS: Final = 10_000
MAX_COST: Final = 50_000
MAX_INTROSPECTION_LISTS: Final = 3

# Page sizes a connection field uses when ``first`` is omitted, and the largest it accepts.
DEFAULT_FIRST: Final[Mapping[str, int]] = {"flows": 100, "auditLog": 50, "versions": 20}
MAX_FIRST: Final[Mapping[str, int]] = {"flows": 1000, "auditLog": 500, "versions": 500}
_INTROSPECTION_LISTS: Final = frozenset(
    {"types", "fields", "inputFields", "interfaces", "possibleTypes", "args", "enumValues"}
)


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one API (tests lower them to exercise the refusals)."""

    max_depth: int = MAX_DEPTH
    max_aliases: int = MAX_ALIASES
    max_tokens: int = MAX_TOKENS
    max_cost: int = MAX_COST
    max_introspection_lists: int = MAX_INTROSPECTION_LISTS

    def extensions(self) -> list[Callable[[], SchemaExtension]]:
        """Factories of the strawberry extensions that enforce these limits (one instance per request)."""
        return [
            functools.partial(MaxTokensLimiter, max_token_count=self.max_tokens),
            functools.partial(QueryDepthLimiter, max_depth=self.max_depth),
            functools.partial(MaxAliasesLimiter, max_alias_count=self.max_aliases),
            functools.partial(AddValidationRules, [introspection_rule(self.max_introspection_lists)]),
            functools.partial(CostLimiter, self.max_cost),
        ]


class CostLimiter(SchemaExtension):
    """Adds the cost rule for this request's variables (page sizes given by variables count at their value)."""

    def __init__(self, max_cost: int) -> None:
        self.max_cost = max_cost

    def on_operation(self) -> Iterator[None]:
        rule = cost_rule(self.max_cost, self.execution_context.variables or {})
        self.execution_context.validation_rules = (*self.execution_context.validation_rules, rule)
        yield


class _Walker:
    """Cost of selection sets with fragments expanded (each fragment's cost computed once)."""

    def __init__(self, fragments: Mapping[str, FragmentDefinitionNode], variables: Mapping[str, Any]) -> None:
        self._fragments = fragments
        self._variables = variables
        self._memo: dict[str, int] = {}

    def cost(self, selection_set: SelectionSetNode | None, visiting: frozenset[str] = frozenset()) -> int:
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.name.value.startswith("__"):
                    total += 1  # bounded by the introspection rule
                    continue
                total += 1 + _multiplier(selection, self._variables) * self.cost(selection.selection_set, visiting)
            elif isinstance(selection, InlineFragmentNode):
                total += self.cost(selection.selection_set, visiting)
            elif isinstance(selection, FragmentSpreadNode):
                total += self._fragment_cost(selection.name.value, visiting)
        return total

    def _fragment_cost(self, name: str, visiting: frozenset[str]) -> int:
        if name in visiting or name not in self._fragments:
            return 0  # cycles and unknown fragments are reported by graphql-core's own rules
        if name not in self._memo:
            self._memo[name] = self.cost(self._fragments[name].selection_set, visiting | {name})
        return self._memo[name]


def _multiplier(field: FieldNode, variables: Mapping[str, Any]) -> int:
    name = field.name.value
    default = DEFAULT_FIRST.get(name, 1)
    for argument in field.arguments or ():
        if argument.name.value != "first":
            continue
        value: Any = None
        if isinstance(argument.value, IntValueNode):
            value = int(argument.value.value)
        elif isinstance(argument.value, VariableNode):
            value = variables.get(argument.value.name.value, default)
        # A value the field will refuse (not an int, negative, over its maximum) costs its maximum here.
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return MAX_FIRST.get(name, 1000)
        return max(value, 1)
    return default


def operation_cost(document_definitions: Any, variables: Mapping[str, Any] | None = None) -> dict[str, int]:
    """The cost of each operation of a parsed document (by name, ``""`` for an anonymous one)."""
    fragments = {d.name.value: d for d in document_definitions if isinstance(d, FragmentDefinitionNode)}
    walker = _Walker(fragments, variables or {})
    return {
        (d.name.value if d.name else ""): walker.cost(d.selection_set)
        for d in document_definitions
        if isinstance(d, OperationDefinitionNode)
    }


def cost_rule(max_cost: int, variables: Mapping[str, Any] | None = None) -> type[ValidationRule]:
    """A validation rule refusing operations that cost more than ``max_cost`` (with these variables)."""

    class CostRule(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            for name, cost in operation_cost(context.document.definitions, variables).items():
                if cost > max_cost:
                    label = f"'{name}'" if name else "the operation"
                    context.report_error(
                        GraphQLError(
                            f"{label} costs {cost}, more than the limit of {max_cost}: ask for smaller pages "
                            "or fewer fields",
                            extensions={"code": "QUERY_TOO_COMPLEX", "cost": cost, "maximum": max_cost},
                        )
                    )

    return CostRule


def introspection_rule(max_lists: int) -> type[ValidationRule]:
    """A validation rule bounding how deep lists may nest inside an introspection query."""

    class IntrospectionRule(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self._fragments = {
                d.name.value: d for d in context.document.definitions if isinstance(d, FragmentDefinitionNode)
            }

        def enter_field(self, node: FieldNode, *_: object) -> None:
            if node.name.value in ("__schema", "__type"):
                deepest = self._lists(node.selection_set, 0, frozenset())
                if deepest > max_lists:
                    self.report_error(
                        GraphQLError(
                            f"introspection lists nest {deepest} deep, more than the limit of {max_lists}",
                            nodes=[node],
                            extensions={"code": "QUERY_TOO_COMPLEX"},
                        )
                    )

        def _lists(self, selection_set: SelectionSetNode | None, depth: int, visiting: frozenset[str]) -> int:
            if selection_set is None or depth > max_lists:
                return depth
            deepest = depth
            for selection in selection_set.selections:
                if isinstance(selection, FieldNode):
                    step = 1 if selection.name.value in _INTROSPECTION_LISTS else 0
                    deepest = max(deepest, self._lists(selection.selection_set, depth + step, visiting))
                elif isinstance(selection, InlineFragmentNode):
                    deepest = max(deepest, self._lists(selection.selection_set, depth, visiting))
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    fragment = self._fragments.get(name)
                    if fragment is not None and name not in visiting:
                        deepest = max(deepest, self._lists(fragment.selection_set, depth, visiting | {name}))
            return deepest

    return IntrospectionRule


class BodySizeLimit:
    """Refuses HTTP request bodies over ``max_bytes`` with 413, whether announced or streamed.

    The body is read before the app runs (GraphQL bodies are small), so a refused request never
    reaches it half-read.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _too_large(send, self.max_bytes)
                return
        messages: list[Message] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await _too_large(send, self.max_bytes)
                return
            if not message.get("more_body", False):
                break
        buffered = iter(messages)

        async def replay() -> Message:
            message = next(buffered, None)
            return message if message is not None else await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Send, max_bytes: int) -> None:
    body = orjson.dumps(
        {
            "errors": [
                {"message": f"request body larger than {max_bytes} bytes", "extensions": {"code": "PAYLOAD_TOO_LARGE"}}
            ]
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
