"""Operation cost and introspection bounds (no server)."""

from __future__ import annotations

import pytest

from graphql import get_introspection_query, parse
from services.api.limits import DEFAULT_FIRST, Limits, operation_cost
from services.api.schema import build_schema


@pytest.mark.parametrize(
    ("query", "variables", "cost"),
    [
        ("{ me { name } }", {}, 2),
        ("{ flows { edges { node { proto } } } }", {}, 1 + DEFAULT_FIRST["flows"] * (1 + 2)),
        ("{ flows(first: 10) { edges { node { proto } } } }", {}, 1 + 10 * 3),
        ("query($n: Int) { flows(first: $n) { edges { cursor } } }", {"n": 7}, 1 + 7 * 2),
        ("query($n: Int) { flows(first: $n) { edges { cursor } } }", {}, 1 + DEFAULT_FIRST["flows"] * 2),
        ("query($n: Int) { flows(first: $n) { edges { cursor } } }", {"n": "x"}, 1 + 1000 * 2),
        ("{ ...F } fragment F on Query { me { name } }", {}, 2),
        ("{ a: me { ...G } b: me { ...G } } fragment G on Me { name role }", {}, 6),
    ],
)
def test_operation_cost(query, variables, cost):
    assert operation_cost(parse(query).definitions, variables) == {"": cost}


def test_fragments_reused_many_times_are_costed_without_blowing_up():
    fragments = "fragment F0 on Me { name }\n" + "\n".join(
        f"fragment F{i} on Me {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, 40)
    )
    (cost,) = operation_cost(parse("{ me { ...F39 } }\n" + fragments).definitions).values()
    assert cost == 1 + 2**39


async def test_the_schema_refuses_costly_and_exploding_introspection_queries():
    schema = build_schema(Limits(max_cost=100, max_introspection_lists=3))
    costly = await schema.execute("{ flows(first: 50) { edges { cursor } } }")
    assert costly.errors
    assert costly.errors[0].extensions["code"] == "QUERY_TOO_COMPLEX"
    exploding = await schema.execute(
        "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"
    )
    assert exploding.errors
    assert "introspection" in exploding.errors[0].message
    standard = await schema.execute(get_introspection_query())
    assert standard.errors is None
