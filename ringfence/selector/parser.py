"""Parse selector tokens into a syntax tree, following Calico's parser (libcalico-go ``selector/parser``).

Grammar, lowest precedence first::

    or  := and ("||" and)*
    and := op ("&&" op)*
    op  := "!"* ( has(label) | all() | global() | "(" or ")"
                | label ("==" | "!=" | "contains" | "starts with" | "ends with") string
                | label ("in" | "not in") "{" [string ("," string)* [","]] "}" )

Leading ``!``s collapse (an even number cancels) and apply to the whole operation, so ``!a == "x"``
is ``!(a == "x")``. A group of one operand is that operand; the empty selector is ``all()``.
"""

from __future__ import annotations

from typing import Final

from ringfence.selector.ast import All, And, Compare, Comparison, Global, Has, InSet, Node, Not, Or
from ringfence.selector.errors import SelectorError
from ringfence.selector.tokenizer import OPERATORS, Kind, Token, tokenize

# Calico has no limit; ours keeps recursion (parsing, printing, compiling, evaluating) far from Python's
# stack limit. Real selectors nest a handful of levels.
MAX_NESTING: Final = 64

_COMPARISONS: Final = {
    Kind.EQ: Comparison.EQ,
    Kind.NE: Comparison.NE,
    Kind.CONTAINS: Comparison.CONTAINS,
    Kind.STARTS_WITH: Comparison.STARTS_WITH,
    Kind.ENDS_WITH: Comparison.ENDS_WITH,
}


def parse(text: str) -> Node:
    """Parse ``text`` into a syntax tree; raise ``SelectorError`` with the position of the first problem."""
    return _Parser(text).parse()


def describe_token(token: Token) -> str:
    """Name a token for an error message: ``label 'app'``, ``string "x"``, ``'&&'``, ``end of selector``."""
    if token.kind is Kind.LABEL:
        return f"label {token.value!r}"
    if token.kind is Kind.STRING:
        return f"string {token.value!r}"
    if token.kind is Kind.HAS:
        return f"has({token.value})"
    description: str = token.kind.value
    return description


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0

    def parse(self) -> Node:
        if self._peek().kind is Kind.EOF:
            return All()
        node = self._or()
        token = self._peek()
        if token.kind is not Kind.EOF:
            raise self._error("expected '&&', '||' or end of selector", token)
        return node

    def _peek(self) -> Token:
        return self.tokens[self.index]

    def _take(self) -> Token:
        token = self.tokens[self.index]
        if token.kind is not Kind.EOF:
            self.index += 1
        return token

    def _error(self, expected: str, found: Token) -> SelectorError:
        return SelectorError(
            f"{expected} but found {describe_token(found)}", selector=self.text, position=found.position
        )

    def _or(self) -> Node:
        operands = [self._and()]
        while self._peek().kind is Kind.OR:
            self._take()
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def _and(self) -> Node:
        operands = [self._operation()]
        while self._peek().kind is Kind.AND:
            self._take()
            operands.append(self._operation())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def _operation(self) -> Node:
        negated = False
        while self._peek().kind is Kind.NOT:
            self._take()
            negated = not negated
        node = self._positive_operation()
        return Not(node) if negated else node

    def _positive_operation(self) -> Node:
        token = self._take()
        if token.kind is Kind.HAS:
            return Has(token.value)
        if token.kind is Kind.ALL:
            return All()
        if token.kind is Kind.GLOBAL:
            return Global()
        if token.kind is Kind.LPAREN:
            return self._group(token)
        if token.kind is Kind.LABEL:
            return self._label_operation(token.value)
        raise self._error("expected a label, '!', '(', has(label), all() or global()", token)

    def _group(self, opening: Token) -> Node:
        if self.depth >= MAX_NESTING:
            raise SelectorError(
                f"expected at most {MAX_NESTING} nested parentheses", selector=self.text, position=opening.position
            )
        self.depth += 1
        node = self._or()
        closing = self._take()
        if closing.kind is not Kind.RPAREN:
            raise self._error("expected '&&', '||' or ')'", closing)
        self.depth -= 1
        return node

    def _label_operation(self, label: str) -> Node:
        operator = self._take()
        comparison = _COMPARISONS.get(operator.kind)
        if comparison is not None:
            value = self._take()
            if value.kind is not Kind.STRING:
                raise self._error(f"expected a quoted string after {operator.kind.value}", value)
            return Compare(label, comparison, value.value)
        if operator.kind in {Kind.IN, Kind.NOT_IN}:
            return InSet(label, self._set(operator), negated=operator.kind is Kind.NOT_IN)
        raise self._error(f"expected an operator ({OPERATORS}) after label {label!r}", operator)

    def _set(self, operator: Token) -> tuple[str, ...]:
        opening = self._take()
        if opening.kind is not Kind.LBRACE:
            raise self._error(f"expected '{{' to open the set after {operator.kind.value}", opening)
        values: list[str] = []
        while True:
            token = self._take()
            if token.kind is Kind.RBRACE:
                return tuple(values)
            if token.kind is not Kind.STRING:
                raise self._error("expected a quoted string or '}' in the set", token)
            values.append(token.value)
            separator = self._take()
            if separator.kind is Kind.RBRACE:
                return tuple(values)
            if separator.kind is not Kind.COMMA:
                raise self._error("expected ',' or '}' after a set value", separator)
