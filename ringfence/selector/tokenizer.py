"""Split selector text into tokens, following Calico's tokenizer (libcalico-go ``selector/tokenizer``).

Whitespace is space and tab only. Operator words (``contains``, ``starts with``, ``ends with``,
``in``, ``not in``) are recognised only right after a label, so the same words elsewhere are labels.
``has(``, ``all(`` and ``global(`` take no space before the parenthesis. Strings run to the next
matching quote; there are no escapes, so a value may hold any character but its closing quote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Final

from ringfence.selector.errors import SelectorError

MAX_LABEL_LENGTH: Final = 512


class Kind(Enum):
    """What a token is; the value is how error messages name it."""

    LABEL = "label"
    STRING = "string"
    LBRACE = "'{'"
    RBRACE = "'}'"
    COMMA = "','"
    EQ = "'=='"
    NE = "'!='"
    IN = "'in'"
    NOT_IN = "'not in'"
    CONTAINS = "'contains'"
    STARTS_WITH = "'starts with'"
    ENDS_WITH = "'ends with'"
    NOT = "'!'"
    HAS = "has(...)"
    ALL = "all()"
    GLOBAL = "global()"
    LPAREN = "'('"
    RPAREN = "')'"
    AND = "'&&'"
    OR = "'||'"
    EOF = "end of selector"


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its value (label name or string contents, else empty) and its 0-based span."""

    kind: Kind
    value: str
    position: int
    end: int


OPERATORS: Final = "'==', '!=', 'in', 'not in', 'contains', 'starts with', 'ends with'"
_WHITESPACE: Final = " \t"
_SPACE: Final = "[ \t]*"
_LABEL_CHARS: Final = "[a-zA-Z0-9_./-]"
_LABEL_RE: Final = re.compile(_LABEL_CHARS + "+")
_HAS_RE: Final = re.compile(rf"has\({_SPACE}({_LABEL_CHARS}{{1,{MAX_LABEL_LENGTH}}}){_SPACE}\)")
_ALL_RE: Final = re.compile(rf"all\({_SPACE}\)")
_GLOBAL_RE: Final = re.compile(rf"global\({_SPACE}\)")
# Operators after a label. ``\b`` is an ASCII word boundary, as in Go: ``inf`` is a label-ish error, not ``in``.
_OPERATOR_RES: Final = (
    (re.compile("contains"), Kind.CONTAINS),
    (re.compile(rf"starts{_SPACE}with"), Kind.STARTS_WITH),
    (re.compile(rf"ends{_SPACE}with"), Kind.ENDS_WITH),
    (re.compile(rf"not{_SPACE}in\b", re.ASCII), Kind.NOT_IN),
    (re.compile(r"in\b", re.ASCII), Kind.IN),
)
_SINGLE: Final = {"(": Kind.LPAREN, ")": Kind.RPAREN, "{": Kind.LBRACE, "}": Kind.RBRACE, ",": Kind.COMMA}
_FUNCTIONS: Final = {"has(": (_HAS_RE, Kind.HAS), "all(": (_ALL_RE, Kind.ALL), "global(": (_GLOBAL_RE, Kind.GLOBAL)}
_DOUBLE: Final = {"==": Kind.EQ, "!=": Kind.NE, "&&": Kind.AND, "||": Kind.OR}


def describe(text: str, position: int) -> str:
    """Name what sits at ``position`` for an error message: the character, or the end of the selector."""
    if position >= len(text):
        return "end of selector"
    return repr(text[position])


def tokenize(text: str) -> list[Token]:
    """Return the tokens of ``text``, ending with an ``EOF`` token; raise ``SelectorError`` on bad input."""
    tokens: list[Token] = []
    pos = 0
    end = len(text)
    after_label = False
    while True:
        while pos < end and text[pos] in _WHITESPACE:
            pos += 1
        if pos == end:
            tokens.append(Token(Kind.EOF, "", pos, pos))
            return tokens
        token = _next_token(text, pos, after_label=after_label)
        tokens.append(token)
        after_label = token.kind is Kind.LABEL
        pos = token.end


def _next_token(text: str, pos: int, *, after_label: bool) -> Token:
    char = text[pos]
    pair = text[pos : pos + 2]
    if pair in _DOUBLE:
        return Token(_DOUBLE[pair], "", pos, pos + 2)
    if char in _SINGLE:
        return Token(_SINGLE[char], "", pos, pos + 1)
    if char == "!":
        return Token(Kind.NOT, "", pos, pos + 1)
    if char in "\"'":
        close = text.find(char, pos + 1)
        if close == -1:
            raise SelectorError(
                f"expected closing {char} of the string but found end of selector", selector=text, position=len(text)
            )
        return Token(Kind.STRING, text[pos + 1 : close], pos, close + 1)
    if char in "=&|":
        raise SelectorError(
            f"expected {char * 2!r} but found {describe(text, pos + 1)} after {char!r}", selector=text, position=pos
        )
    if after_label:
        for pattern, kind in _OPERATOR_RES:
            match = pattern.match(text, pos)
            if match:
                return Token(kind, "", pos, match.end())
        raise SelectorError(
            f"expected an operator ({OPERATORS}) after the label but found {_describe_word(text, pos)}",
            selector=text,
            position=pos,
        )
    for name in _FUNCTIONS:
        if text.startswith(name, pos):
            return _function(text, pos, name)
    match = _LABEL_RE.match(text, pos)
    if match:
        if match.end() - pos > MAX_LABEL_LENGTH:
            raise _label_too_long(text, pos, match.end() - pos)
        return Token(Kind.LABEL, match.group(), pos, match.end())
    raise SelectorError(
        f"expected a label, a string, '!', '(' or a function but found {describe(text, pos)}",
        selector=text,
        position=pos,
    )


def _function(text: str, pos: int, name: str) -> Token:
    pattern, kind = _FUNCTIONS[name]
    match = pattern.match(text, pos)
    if match:
        value = match.group(1) if kind is Kind.HAS else ""
        return Token(kind, value, pos, match.end())
    inside = pos + len(name)
    while inside < len(text) and text[inside] in _WHITESPACE:
        inside += 1
    if name == "has(":
        label = _LABEL_RE.match(text, inside)
        if label is None:
            raise SelectorError(
                f"expected a label inside 'has(' but found {describe(text, inside)}", selector=text, position=inside
            )
        if label.end() - inside > MAX_LABEL_LENGTH:
            raise _label_too_long(text, inside, label.end() - inside)
        inside = label.end()
        while inside < len(text) and text[inside] in _WHITESPACE:
            inside += 1
    raise SelectorError(
        f"expected ')' to close {name!r} but found {describe(text, inside)}", selector=text, position=inside
    )


def _describe_word(text: str, pos: int) -> str:
    match = _LABEL_RE.match(text, pos)
    if match:
        return repr(match.group())
    return describe(text, pos)


def _label_too_long(text: str, pos: int, length: int) -> SelectorError:
    return SelectorError(
        f"expected a label of at most {MAX_LABEL_LENGTH} characters but found one of {length}",
        selector=text,
        position=pos,
    )
