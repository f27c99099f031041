"""The schema: the exported file is current, the design's fixed core is all there, every root field is tested."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphql import (
    GraphQLInputObjectType,
    GraphQLObjectType,
    GraphQLUnionType,
    InputObjectTypeDefinitionNode,
    ObjectTypeDefinitionNode,
    UnionTypeDefinitionNode,
    ast_from_value,
    parse,
    print_ast,
)
from services.api import export_schema
from services.api.schema import build_schema

# The fixed core of the design (design.md, "GraphQL schema — the fixed core"): names and types that
# clients build against. The schema may add to it, never rename or retype it.
FIXED_CORE = """
type Query {
  tiers: [Tier!]!
  policies(tier: String, namespace: String, includeStaged: Boolean = true): [Policy!]!
  networkSets(namespace: String): [NetworkSet!]!
  flows(filter: FlowFilter, first: Int = 100, after: String): FlowConnection!
  flowGraph(filter: FlowFilter): FlowGraph!
  policyBoard(from: DateTime, to: DateTime): PolicyBoard!
  explainFlow(flow: FlowInput!): FlowVerdict!
  validateSelector(selector: String!): SelectorCheck!
  job(id: ID!): Job
  auditLog(first: Int = 50, after: String): AuditConnection!
}
type Mutation {
  applyManifests(yaml: String!): [Resource!]!
  deleteResource(kind: String!, name: String!, namespace: String): Boolean!
  recommendPolicies(namespace: String!, workload: String): Job!
  promoteStagedPolicy(kind: String!, name: String!, namespace: String): Policy!
}
type Subscription {
  impactPreview(yaml: String!, deletes: [ResourceRef!], from: DateTime, to: DateTime): ImpactEvent!
  jobProgress(id: ID!): Job!
}
type Resource { kind: String!  name: String!  namespace: String  resourceVersion: String!  yaml: String! }
type FlowConnection { edges: [FlowEdge!]!  pageInfo: PageInfo!  totalCount: Int! }
type FlowEdge { node: Flow!  cursor: String! }
type AuditConnection { edges: [AuditEdge!]!  pageInfo: PageInfo!  totalCount: Int! }
type PageInfo { hasNextPage: Boolean!  endCursor: String }
type Flow { startTime: DateTime!  endTime: DateTime!  reporter: String!  action: String!  proto: String!
            destPort: Int  sourceType: String!  sourceNamespace: String  sourceNameAggr: String!
            destType: String!  destNamespace: String  destNameAggr: String!  destDomains: [String!]!
            numFlows: Int!  bytesIn: Float!  bytesOut: Float!  policies: [String!]! }
type FlowGraph { nodes: [FlowNode!]!  edges: [FlowGraphEdge!]! }
type FlowNode { id: ID!  kind: String!  namespace: String  name: String! }
type FlowGraphEdge { source: ID!  target: ID!  destPort: Int  proto: String!  action: String!  numFlows: Int! }
input FlowFilter { namespace: String  workload: String  action: String  reporter: String
                   from: DateTime  to: DateTime }
type Policy { kind: String! name: String! namespace: String tier: String! order: Float
              selector: String! staged: Boolean! types: [String!]! yaml: String! }
type FlowVerdict { action: String!  stagedAction: String!  trace: [String!]! }
type SelectorCheck { ok: Boolean!  error: String  position: Int }
type Job { id: ID!  kind: String!  state: String!  progress: Float!  error: String  result: JSON }
union ImpactEvent = ImpactProgress | ImpactedFlow | ImpactSummary
type ImpactProgress { processed: Int!  total: Int! }
type ImpactedFlow { flow: Flow!  before: String!  after: String!
                    beforeTrace: [String!]!  afterTrace: [String!]! }
type ImpactSummary { examined: Int!  changed: Int!  newlyDenied: Int!  newlyAllowed: Int!  uncertain: Int! }
type PolicyBoard { tiers: [BoardTier!]! }
type BoardTier { name: String!  order: Float  policies: [BoardPolicy!]! }
type BoardPolicy { kind: String!  name: String!  namespace: String  staged: Boolean!
                   allowed: Int!  denied: Int!  passed: Int! }
"""

SCHEMA = build_schema()._schema
CORE = parse(FIXED_CORE)
TEST_SOURCES = "\n".join(
    path.read_text() for path in Path(__file__).parent.glob("test_api_*.py") if path.name != Path(__file__).name
)


def test_the_exported_schema_file_is_current():
    assert export_schema.SCHEMA_PATH.read_text(encoding="utf-8") == export_schema.schema_text(), (
        "graphql/schema.graphql is stale: run `python -m services.api.export_schema`"
    )


def test_the_check_command_fails_on_a_stale_file(tmp_path):
    stale = tmp_path / "schema.graphql"
    stale.write_text("type Query { old: Int }\n")
    assert export_schema.main(["--check", "--output", str(stale)]) == 1
    assert export_schema.main(["--output", str(stale)]) == 0
    assert export_schema.main(["--check", "--output", str(stale)]) == 0


CORE_FIELDS = [
    (definition.name.value, field)
    for definition in CORE.definitions
    if isinstance(definition, ObjectTypeDefinitionNode | InputObjectTypeDefinitionNode)
    for field in definition.fields or ()
]


@pytest.mark.parametrize(("type_name", "field"), CORE_FIELDS, ids=[f"{t}.{f.name.value}" for t, f in CORE_FIELDS])
def test_the_fixed_core_field_exists_with_its_type_and_arguments(type_name, field):
    ours = SCHEMA.type_map.get(type_name)
    assert isinstance(ours, GraphQLObjectType | GraphQLInputObjectType), type_name
    name = field.name.value
    assert name in ours.fields, f"{type_name}.{name} is missing"
    assert str(ours.fields[name].type) == print_ast(field.type)
    for argument in getattr(field, "arguments", None) or ():
        our_argument = ours.fields[name].args.get(argument.name.value)  # type: ignore[union-attr]
        assert our_argument is not None, f"{type_name}.{name}({argument.name.value})"
        assert str(our_argument.type) == print_ast(argument.type)
        if argument.default_value is not None:
            ours_default = ast_from_value(our_argument.default_value, our_argument.type)
            assert ours_default is not None
            assert print_ast(ours_default) == print_ast(argument.default_value)


def test_the_fixed_core_union_has_its_members():
    for definition in CORE.definitions:
        if isinstance(definition, UnionTypeDefinitionNode):
            ours = SCHEMA.type_map[definition.name.value]
            assert isinstance(ours, GraphQLUnionType)
            assert {t.name for t in ours.types} >= {t.name.value for t in definition.types or ()}


ROOT_FIELDS = [
    (root.name, name)
    for root in (SCHEMA.query_type, SCHEMA.mutation_type, SCHEMA.subscription_type)
    if root is not None
    for name in root.fields
]


@pytest.mark.parametrize(("root", "name"), ROOT_FIELDS, ids=[f"{r}.{n}" for r, n in ROOT_FIELDS])
def test_every_root_field_is_exercised_by_a_test(root, name):
    assert f"{name}(" in TEST_SOURCES or f"{name} {{" in TEST_SOURCES or f"{{ {name} " in TEST_SOURCES, (
        f"no API test queries {root}.{name}"
    )
