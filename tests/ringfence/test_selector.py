"""Table tests for the selector language: matching, canonical form, errors, façade behaviour."""

from __future__ import annotations

import pickle
from types import MappingProxyType

import pytest

from ringfence.selector import Selector, SelectorError, parse_selector
from ringfence.selector.parser import MAX_NESTING
from ringfence.selector.tokenizer import MAX_LABEL_LENGTH

# (selector, label maps it must match, label maps it must not match)
MATCH_TABLE: list[tuple[str, list[dict[str, str]], list[dict[str, str]]]] = [
    ('app == "frontend"', [{"app": "frontend"}, {"app": "frontend", "x": "y"}], [{}, {"app": "backend"}]),
    ("app == 'frontend' && has(tier)", [{"app": "frontend", "tier": "web"}], [{"app": "frontend"}, {"tier": "web"}]),
    ('env != "prod"', [{}, {"env": "dev"}, {"other": "prod"}], [{"env": "prod"}]),
    ('tier in {"web", "api"}', [{"tier": "web"}, {"tier": "api"}], [{}, {"tier": "db"}, {"web": "tier"}]),
    ('tier not in {"web", "api"}', [{}, {"tier": "db"}], [{"tier": "web"}, {"tier": "api"}]),
    ("a in {}", [], [{}, {"a": ""}, {"a": "x"}]),
    ("a not in {}", [{}, {"a": ""}, {"a": "x"}], []),
    ('a in {"x",}', [{"a": "x"}], [{"a": ""}]),
    ('a in{"x"}', [{"a": "x"}], [{"a": "y"}]),
    ('a notin {"x"}', [{"a": "y"}, {}], [{"a": "x"}]),
    ('a not \t in {"x"}', [{"a": "y"}], [{"a": "x"}]),
    ('name contains "end"', [{"name": "frontend"}, {"name": "end"}], [{}, {"name": "en"}]),
    ('a contains ""', [{"a": ""}, {"a": "x"}], [{}]),
    ('a starts with "fr"', [{"a": "frontend"}, {"a": "fr"}], [{}, {"a": "afr"}]),
    ('a startswith "fr"', [{"a": "frontend"}], [{"a": "f"}]),
    ('a starts\twith "fr"', [{"a": "frontend"}], [{"a": "f"}]),
    ('a ends  with "end"', [{"a": "backend"}], [{}, {"a": "ending"}]),
    ('a endswith ""', [{"a": ""}, {"a": "x"}], [{}]),
    ('a == ""', [{"a": ""}], [{}, {"a": " "}]),
    ("has(a)", [{"a": ""}, {"a": "x"}], [{}, {"b": "a"}]),
    ("has( a\t)", [{"a": "x"}], [{}]),
    ("!has(a)", [{}, {"b": "a"}], [{"a": ""}]),
    ("!!has(a)", [{"a": "x"}], [{}]),
    ("! ! ! has(a)", [{}], [{"a": "x"}]),
    # A leading ! applies to the whole comparison, so absent labels satisfy !a == "x".
    ('!a == "x"', [{}, {"a": "y"}], [{"a": "x"}]),
    ('!a in {"x"}', [{}, {"a": "y"}], [{"a": "x"}]),
    ('!a != "x"', [{"a": "x"}], [{}, {"a": "y"}]),
    ('!a contains "x"', [{}, {"a": "y"}], [{"a": "xx"}]),
    # && binds tighter than ||.
    ('a == "1" || b == "2" && c == "3"', [{"a": "1"}, {"b": "2", "c": "3"}], [{"b": "2"}, {"c": "3"}]),
    ('(a == "1" || b == "2") && c == "3"', [{"a": "1", "c": "3"}, {"b": "2", "c": "3"}], [{"a": "1"}, {"c": "3"}]),
    ('!(a == "1" || b == "2")', [{}, {"a": "2", "b": "1"}], [{"a": "1"}, {"b": "2"}]),
    ('!(a == "1" && b == "2") && has(c)', [{"c": ""}, {"a": "1", "c": ""}], [{"a": "1", "b": "2", "c": ""}, {}]),
    ("", [{}, {"a": "b"}], []),
    (" \t ", [{}, {"a": "b"}], []),
    ("all()", [{}, {"a": "b"}], []),
    ("all( )", [{}], []),
    ("!all()", [], [{}, {"a": "b"}]),
    # global() is true in plain evaluation; namespace selectors give it meaning elsewhere.
    ("global()", [{}, {"a": "b"}], []),
    ("!global()", [], [{}]),
    ("has(a) || all()", [{}, {"a": "x"}], []),
    # Calico's implicit labels and Kubernetes-style keys.
    (
        "projectcalico.org/namespace == 'storefront' && k8s-app == \"kube-dns\"",
        [{"projectcalico.org/namespace": "storefront", "k8s-app": "kube-dns"}],
        [{"projectcalico.org/namespace": "storefront"}],
    ),
    ('1abc == "x" && _y.z/w-v == "u"', [{"1abc": "x", "_y.z/w-v": "u"}], [{"1abc": "x"}]),
    # Operator words are labels unless they follow a label.
    ('in == "x"', [{"in": "x"}], [{}]),
    ('has == "x"', [{"has": "x"}], [{}]),
    ('contains contains "x"', [{"contains": "axb"}], [{"contains": "y"}]),
    ('not not in {"x"}', [{}, {"not": "y"}], [{"not": "x"}]),
    ('in in {"x"}', [{"in": "x"}], [{"in": "y"}]),
    ('all == "x"', [{"all": "x"}], [{}]),
    # Values may hold any character but their closing quote: operators, braces, newlines, unicode.
    ('note == "a && b || (c) {d}, !e"', [{"note": "a && b || (c) {d}, !e"}], [{"note": "a"}]),
    ('note == "two\nlines"', [{"note": "two\nlines"}], [{"note": "two lines"}]),
    ("q == 'say \"hi\"'", [{"q": 'say "hi"'}], [{"q": "say hi"}]),
    ('q == "it\'s"', [{"q": "it's"}], [{"q": "its"}]),
    ('team == "équipe"', [{"team": "équipe"}], [{"team": "equipe"}]),
    ("a in {\"'\", '\"'}", [{"a": "'"}, {"a": '"'}], [{"a": "x"}]),
]

MATCH_CASES = [
    pytest.param(text, labels, expected, id=f"{text!r}-{i}")
    for text, matching, non_matching in MATCH_TABLE
    for i, (labels, expected) in enumerate([(m, True) for m in matching] + [(n, False) for n in non_matching])
]


@pytest.mark.parametrize(("text", "labels", "expected"), MATCH_CASES)
def test_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    selector = parse_selector(text)
    assert selector.matches(labels) is expected
    assert selector.root.evaluate(labels) is expected


@pytest.mark.parametrize(("text", "labels", "expected"), MATCH_CASES)
def test_matches_after_canonicalising(text: str, labels: dict[str, str], expected: bool) -> None:
    canonical = str(parse_selector(text))
    reparsed = parse_selector(canonical)
    assert reparsed.matches(labels) is expected
    assert str(reparsed) == canonical


CANONICAL_TABLE: list[tuple[str, str]] = [
    ("", "all()"),
    (" ( ( all( ) ) ) ", "all()"),
    ("global( )", "global()"),
    ("a==\"x\"&&b!='y'", '(a == "x" && b != "y")'),
    ('a == "1" || b == "2" && c == "3"', '(a == "1" || (b == "2" && c == "3"))'),
    ('a == "1" && b == "2" && c == "3"', '(a == "1" && b == "2" && c == "3")'),
    # Explicit grouping is kept: Calico does not flatten nested groups.
    ('a == "1" && (b == "2" && c == "3")', '(a == "1" && (b == "2" && c == "3"))'),
    ('((a == "x"))', 'a == "x"'),
    ('!(a == "x")', '!a == "x"'),
    ('! ( a == "x" || ! has( b ) )', '!(a == "x" || !has(b))'),
    ("! ! has(a)", "has(a)"),
    ("!!!has(a)", "!has(a)"),
    ('a in {\'b\', "a", "b"}', 'a in {"a", "b"}'),
    ("a in {}", "a in {}"),
    ('a not in {"z", "y", "z",}', 'a not in {"y", "z"}'),
    ("a notin {'x'}", 'a not in {"x"}'),
    ('a in {\'x"y\', "z"}', 'a in {\'x"y\', "z"}'),
    ("q == 'say \"hi\"'", "q == 'say \"hi\"'"),
    ('q == "it\'s"', 'q == "it\'s"'),
    ("q=='plain'", 'q == "plain"'),
    ('a startswith "x"', 'a starts with "x"'),
    ('a   ends\twith "x"', 'a ends with "x"'),
    ("a contains 'x'", 'a contains "x"'),
]


@pytest.mark.parametrize(("text", "canonical"), CANONICAL_TABLE)
def test_canonical_form(text: str, canonical: str) -> None:
    selector = parse_selector(text)
    assert str(selector) == canonical
    assert str(parse_selector(canonical)) == canonical
    assert selector == parse_selector(canonical)
    assert hash(selector) == hash(parse_selector(canonical))


# (selector, 0-based position, expected text in the message)
ERROR_TABLE: list[tuple[str, int, str]] = [
    ('a == "x" && b', 13, "expected an operator"),
    ("a == ", 5, "expected a quoted string after '==' but found end of selector"),
    ("a == b", 5, "expected a quoted string after '==' but found label 'b'"),
    ('a = "x"', 2, "expected '=='"),
    ('a == "x" & b == "y"', 9, "expected '&&'"),
    ('a == "x" | b == "y"', 9, "expected '||'"),
    ('(a == "x"', 9, "expected '&&', '||' or ')' but found end of selector"),
    ('a == "x")', 8, "expected '&&', '||' or end of selector but found ')'"),
    ('a == "x', 7, 'expected closing " of the string but found end of selector'),
    ("a == 'x\"", 8, "expected closing ' of the string"),
    ("has(a", 5, "expected ')' to close 'has(' but found end of selector"),
    ("has( a b)", 7, "expected ')' to close 'has(' but found 'b'"),
    ("has()", 4, "expected a label inside 'has(' but found ')'"),
    ("has (a)", 4, "expected an operator"),
    ("all(x)", 4, "expected ')' to close 'all('"),
    ("global(", 7, "expected ')' to close 'global('"),
    ("a b", 2, "expected an operator ('==', '!=', 'in', 'not in', 'contains', 'starts with', 'ends with') after"),
    ('a inf {"x"}', 2, "found 'inf'"),
    ('a starts "x"', 2, "expected an operator"),
    ('a in "x"', 5, "expected '{' to open the set after 'in' but found string 'x'"),
    ('a not in ("x")', 9, "expected '{' to open the set after 'not in'"),
    ('a in {"x" "y"}', 10, "expected ',' or '}' after a set value but found string 'y'"),
    ('a in {"x", b}', 11, "expected a quoted string or '}' in the set but found label 'b'"),
    ("a in {,}", 6, "expected a quoted string or '}' in the set but found ','"),
    ('a in {"x"', 9, "expected ',' or '}' after a set value but found end of selector"),
    ('"x" == a', 0, "expected a label, '!', '(', has(label), all() or global() but found string 'x'"),
    ("!", 1, "but found end of selector"),
    ("()", 1, "but found ')'"),
    (")", 0, "but found ')'"),
    ('a == "x" &&', 11, "but found end of selector"),
    ('a == "x" ||', 11, "but found end of selector"),
    ('a == "x"\n', 8, "found '\\n'"),
    ('a == "x" &&\nb == "y"', 11, "found '\\n'"),
    ("%", 0, "expected a label, a string, '!', '(' or a function but found '%'"),
    ("app == \u201cx\u201d", 7, "found '\u201c'"),
    ("a" * (MAX_LABEL_LENGTH + 1) + ' == "x"', 0, f"expected a label of at most {MAX_LABEL_LENGTH} characters"),
    ("has(" + "a" * (MAX_LABEL_LENGTH + 1) + ")", 4, f"at most {MAX_LABEL_LENGTH} characters"),
    ("(" * (MAX_NESTING + 1) + "all()" + ")" * (MAX_NESTING + 1), MAX_NESTING, "nested parentheses"),
]


@pytest.mark.parametrize(("text", "position", "message"), ERROR_TABLE)
def test_errors_give_position_and_expectation(text: str, position: int, message: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)
    error = caught.value
    assert error.position == position
    assert error.selector == text
    assert message in str(error)
    assert str(error).endswith(f"at position {position}")
    assert isinstance(error, ValueError)


def test_longest_label_and_deepest_nesting_are_accepted() -> None:
    label = "a" * MAX_LABEL_LENGTH
    assert parse_selector(f'{label} == "x"').matches({label: "x"})
    assert parse_selector(f"has({label})").matches({label: ""})
    deep = "(" * (MAX_NESTING - 1) + '!(a == "x" || b == "y")' + ")" * (MAX_NESTING - 1)
    assert parse_selector(deep).matches({"a": "z"})
    assert not parse_selector(deep).matches({"b": "y"})
    # The worst case for the compiled form: every level alternates ||, && and !.
    worst = 'a == "x"'
    for level in range(MAX_NESTING):
        worst = f"has(l{level}) || has(m{level}) && !({worst})"
    selector = parse_selector(worst)
    assert selector.matches({"l0": ""}) is selector.root.evaluate({"l0": ""})
    assert selector.matches({"m99": ""}) is selector.root.evaluate({"m99": ""})


@pytest.mark.parametrize(
    ("text", "is_all", "is_global"),
    [
        ("", True, False),
        ("all()", True, False),
        ("(all())", True, False),
        ("!!all()", True, False),
        ("!all()", False, False),
        ("all() && all()", False, False),
        ("global()", False, True),
        ("( global( ) )", False, True),
        ("!global()", False, False),
        ("global() || has(a)", False, False),
        ("has(a)", False, False),
    ],
)
def test_is_all_and_is_global(text: str, is_all: bool, is_global: bool) -> None:
    selector = parse_selector(text)
    assert selector.is_all is is_all
    assert selector.is_global is is_global


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("", frozenset()),
        ("all() || global()", frozenset()),
        ('a == "x" && (b in {"y"} || !has(c)) && d contains "z"', frozenset({"a", "b", "c", "d"})),
        ('!a starts with "1" || a ends with "2"', frozenset({"a"})),
    ],
)
def test_labels_referenced(text: str, labels: frozenset[str]) -> None:
    assert parse_selector(text).labels_referenced() == labels


def test_selectors_are_cached_by_text() -> None:
    text = 'cached == "yes" && has(ringfence-cache-test)'
    assert parse_selector(text) is parse_selector(text)


def test_equality_follows_canonical_form() -> None:
    assert parse_selector('a in {"b", "a"}') == parse_selector("a in {'a','b','a'}")
    assert parse_selector('a == "x"') != parse_selector('a == "y"')
    assert parse_selector('a == "1" && b == "2"') != parse_selector('b == "2" && a == "1"')
    assert len({parse_selector("has(a)"), parse_selector("( has( a ) )"), parse_selector("!!has(a)")}) == 1
    assert parse_selector("has(a)") != "has(a)"


def test_source_text_is_kept() -> None:
    assert parse_selector(" has( a ) ").source == " has( a ) "
    assert repr(parse_selector(" has( a ) ")) == "Selector('has(a)')"


def test_matches_accepts_any_mapping() -> None:
    selector = parse_selector('a == "x" && b not in {"y"}')
    assert selector.matches(MappingProxyType({"a": "x"}))
    assert not selector.matches(MappingProxyType({"a": "x", "b": "y"}))


def test_selector_and_error_pickle() -> None:
    selector = parse_selector("a == 'x' || has(b)")
    restored = pickle.loads(pickle.dumps(selector))
    assert isinstance(restored, Selector)
    assert restored == selector
    assert restored.matches({"b": ""})
    with pytest.raises(SelectorError) as caught:
        parse_selector("a ==")
    error = pickle.loads(pickle.dumps(caught.value))
    assert (error.position, error.selector, str(error)) == (4, "a ==", str(caught.value))


def test_non_string_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse_selector(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "unique_id"),
    [
        # Calico's scheme: "s:" + unpadded base64url(SHA-224("s:" + canonical form)).
        ("", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
        ("! (has( b)||! has(a ))", "s:Iss0uCleLYv1GSv_pNm7hAO58kE9jAx1NKyG3Q"),
    ],
)
def test_unique_id_is_calicos(text: str, unique_id: str) -> None:
    assert parse_selector(text).unique_id == unique_id
    assert parse_selector(str(parse_selector(text))).unique_id == unique_id
