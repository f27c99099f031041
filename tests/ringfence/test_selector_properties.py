"""Property tests for the selector language: parse/print round trips, the compiled matcher, robustness."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.selector import SelectorError, parse_selector, required_equalities
from ringfence.selector.ast import All, And, Compare, Comparison, Global, Has, InSet, Node, Not, Or
from ringfence.selector.compiler import compile_matcher
from ringfence.selector.requirements import required_labels

# Small pools so that generated label maps often hit the generated selectors; keyword-like label
# names check that operator words are only operators right after a label.
LABEL_POOL = ["a", "b", "app", "in", "not", "has", "all", "contains", "x.y/z-1", "9_"]
VALUE_POOL = ["", "a", "b", "ab", "ba", 'q"', "it's", "x y", "&& ||", "{,}", "é"]

labels_st = st.sampled_from(LABEL_POOL) | st.from_regex(r"[a-zA-Z0-9_./-]{1,12}", fullmatch=True)
values_st = st.sampled_from(VALUE_POOL) | st.text(max_size=5).filter(lambda v: not ('"' in v and "'" in v))
label_maps_st = st.dictionaries(st.sampled_from(LABEL_POOL), st.sampled_from(VALUE_POOL), max_size=6)

leaves_st: st.SearchStrategy[Node] = st.one_of(
    st.just(All()),
    st.just(Global()),
    st.builds(Has, labels_st),
    st.builds(Compare, labels_st, st.sampled_from(list(Comparison)), values_st),
    st.builds(InSet, labels_st, st.lists(values_st, max_size=4).map(tuple), st.booleans()),
)


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    # The parser collapses !!x to x, so a Not never directly holds a Not.
    return st.one_of(
        children.filter(lambda n: not isinstance(n, Not)).map(Not),
        st.lists(children, min_size=2, max_size=4).map(lambda ops: And(tuple(ops))),
        st.lists(children, min_size=2, max_size=4).map(lambda ops: Or(tuple(ops))),
    )


nodes_st: st.SearchStrategy[Node] = st.recursive(leaves_st, _extend, max_leaves=10)


def _space(draw: st.DrawFn, *, required: bool = False) -> str:
    return draw(st.text(alphabet=" \t", min_size=1 if required else 0, max_size=2))


def _quoted(draw: st.DrawFn, value: str) -> str:
    if '"' in value:
        return f"'{value}'"
    if "'" in value:
        return f'"{value}"'
    quote = draw(st.sampled_from(["'", '"']))
    return f"{quote}{value}{quote}"


_SPELLINGS = {
    Comparison.EQ: ["=="],
    Comparison.NE: ["!="],
    Comparison.CONTAINS: ["contains"],
    Comparison.STARTS_WITH: ["starts with", "startswith", "starts \t with"],
    Comparison.ENDS_WITH: ["ends with", "endswith", "ends  with"],
}


@st.composite
def noisy_text(draw: st.DrawFn, node: Node) -> str:
    """Write ``node`` as a user might: any spacing, either quote, redundant parentheses and ``!!``."""
    text = _noisy_core(draw, node)
    if draw(st.integers(0, 5)) == 0:
        text = f"({_space(draw)}{text}{_space(draw)})"
    if draw(st.integers(0, 5)) == 0:
        text = f"!{_space(draw)}!{_space(draw)}{text}"
    return text


def _noisy_core(draw: st.DrawFn, node: Node) -> str:
    sp = _space(draw)
    if isinstance(node, All):
        return f"all({sp})"
    if isinstance(node, Global):
        return f"global({sp})"
    if isinstance(node, Has):
        return f"has({sp}{node.label}{_space(draw)})"
    if isinstance(node, Compare):
        spelling = draw(st.sampled_from(_SPELLINGS[node.op]))
        word = spelling[0].isalpha()
        before = _space(draw, required=word)
        return f"{node.label}{before}{spelling}{sp}{_quoted(draw, node.value)}"
    if isinstance(node, InSet):
        values = list(node.values) + draw(st.lists(st.sampled_from(node.values), max_size=2)) if node.values else []
        values = draw(st.permutations(values))
        items = f"{_space(draw)},{_space(draw)}".join(_quoted(draw, v) for v in values)
        trailing = "," if len(values) > 0 and draw(st.booleans()) else ""
        operator = draw(st.sampled_from(["not in", "notin", "not\tin"])) if node.negated else "in"
        return f"{node.label}{_space(draw, required=True)}{operator}{sp}{{{items}{trailing}}}"
    if isinstance(node, Not):
        operand = draw(noisy_text(node.operand)) if isinstance(node.operand, And | Or) else None
        if operand is None:
            operand = _noisy_core(draw, node.operand)
        return f"!{sp}{operand}"
    separator = "&&" if isinstance(node, And) else "||"
    joined = separator.join(f"{_space(draw)}{draw(noisy_text(op))}{_space(draw)}" for op in node.operands)
    return f"({joined})"


@settings(max_examples=250, deadline=None)
@given(st.data(), nodes_st)
def test_noisy_text_parses_to_the_same_tree(data: st.DataObject, node: Node) -> None:
    text = data.draw(noisy_text(node))
    selector = parse_selector(text)
    # Redundant parentheses and !! vanish; what is left is exactly the generated tree.
    assert _strip_double_negation(selector.root) == _strip_double_negation(node)
    assert str(parse_selector(str(node))) == str(node)


def _strip_double_negation(node: Node) -> Node:
    if isinstance(node, Not):
        inner = _strip_double_negation(node.operand)
        return inner.operand if isinstance(inner, Not) else Not(inner)
    if isinstance(node, And):
        return And(tuple(_strip_double_negation(op) for op in node.operands))
    if isinstance(node, Or):
        return Or(tuple(_strip_double_negation(op) for op in node.operands))
    return node


@settings(max_examples=250, deadline=None)
@given(nodes_st, st.lists(label_maps_st, min_size=1, max_size=5))
def test_canonical_form_is_a_fixed_point_with_the_same_matches(node: Node, label_maps: list[dict[str, str]]) -> None:
    canonical = str(node)
    selector = parse_selector(canonical)
    assert selector.root == node
    assert str(selector) == canonical
    for labels in label_maps:
        assert selector.matches(labels) is node.evaluate(labels)


@settings(max_examples=250, deadline=None)
@given(nodes_st, st.lists(label_maps_st, min_size=1, max_size=8))
def test_compiled_matcher_agrees_with_the_tree(node: Node, label_maps: list[dict[str, str]]) -> None:
    matcher = compile_matcher(node)
    for labels in label_maps:
        assert matcher(labels) is node.evaluate(labels)


@settings(max_examples=250, deadline=None)
@given(nodes_st, st.lists(label_maps_st, min_size=1, max_size=8))
def test_required_labels_are_sound(node: Node, label_maps: list[dict[str, str]]) -> None:
    requirements = required_labels(node)
    for labels in label_maps:
        if not node.evaluate(labels):
            continue
        for label, allowed in requirements.items():
            assert label in labels
            assert allowed is None or labels[label] in allowed
        for label, values in required_equalities(node).items():
            assert labels[label] in values


SELECTOR_PIECES = [
    *" \t\n\r\"'(){},!=&|.-_/",
    *"abc09é",
    "==",
    "!=",
    "&&",
    "||",
    " in ",
    " not in ",
    "notin",
    " contains ",
    " starts with ",
    "endswith",
    "has(",
    "all(",
    "global(",
    "all()",
    '"x"',
    "'y'",
    "{}",
]
selector_like_text = st.lists(st.sampled_from(SELECTOR_PIECES), max_size=25).map("".join)


@settings(max_examples=300, deadline=None)
@given(selector_like_text | st.text(max_size=40) | st.text(alphabet=string.printable, max_size=40))
def test_arbitrary_text_parses_or_raises_selector_error(text: str) -> None:
    failure: SelectorError | None = None
    try:
        selector = parse_selector(text)
    except SelectorError as error:
        failure = error
    if failure is not None:
        assert 0 <= failure.position <= len(text)
        assert failure.selector == text
        assert "expected" in str(failure)
        return
    canonical = str(selector)
    assert str(parse_selector(canonical)) == canonical
    for labels in ({}, {"a": "x"}, {"abc": "", "b": "y"}):
        assert parse_selector(canonical).matches(labels) is selector.matches(labels)


@given(st.from_regex(r"[a-zA-Z0-9_./-]{1,512}", fullmatch=True), values_st)
def test_any_label_and_value_round_trip(label: str, value: str) -> None:
    selector = parse_selector(f"{label} == {_fixed_quote(value)}")
    assert selector.matches({label: value})
    assert not selector.matches({label: value + "x"})
    assert parse_selector(str(selector)) == selector


def _fixed_quote(value: str) -> str:
    return f"'{value}'" if '"' in value else f'"{value}"'
