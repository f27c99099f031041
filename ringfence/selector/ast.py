"""The selector syntax tree: one frozen node class per construct, each with ``evaluate`` and a canonical ``str``.

``evaluate`` is the reference semantics (calico.md section 1); the façade compiles the tree to
faster code and the tests check both agree. ``str`` gives Calico's canonical form: comparisons
``label op "value"`` (single quotes only when the value holds ``"``), sets sorted and de-duplicated,
``!`` glued to its operand and every ``&&`` / ``||`` group in parentheses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias


def quote(value: str) -> str:
    """Quote ``value`` as Calico does: double quotes unless the value itself holds one."""
    if '"' in value:
        return f"'{value}'"
    return f'"{value}"'


class Comparison(StrEnum):
    """The binary operators between a label and a string, spelled canonically."""

    EQ = "=="
    NE = "!="
    CONTAINS = "contains"
    STARTS_WITH = "starts with"
    ENDS_WITH = "ends with"


@dataclass(frozen=True, slots=True)
class All:
    """``all()`` (and the empty selector): matches every label map."""

    def evaluate(self, labels: Mapping[str, str]) -> bool:  # noqa: ARG002 - uniform node interface
        """Return True."""
        return True

    def __str__(self) -> str:
        return "all()"


@dataclass(frozen=True, slots=True)
class Global:
    """``global()``: true in plain evaluation; namespace selectors give it its special meaning."""

    def evaluate(self, labels: Mapping[str, str]) -> bool:  # noqa: ARG002 - uniform node interface
        """Return True."""
        return True

    def __str__(self) -> str:
        return "global()"


@dataclass(frozen=True, slots=True)
class Has:
    """``has(label)``: the label is present, whatever its value."""

    label: str

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        """Return whether the label is present."""
        return self.label in labels

    def __str__(self) -> str:
        return f"has({self.label})"


@dataclass(frozen=True, slots=True)
class Compare:
    """``label op "value"``; ``!=`` is true when the label is absent, every other operator needs it."""

    label: str
    op: Comparison
    value: str

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        """Apply the comparison to the label's value."""
        actual = labels.get(self.label)
        if self.op is Comparison.NE:
            return actual != self.value
        if actual is None:
            return False
        if self.op is Comparison.EQ:
            return actual == self.value
        if self.op is Comparison.CONTAINS:
            return self.value in actual
        if self.op is Comparison.STARTS_WITH:
            return actual.startswith(self.value)
        return actual.endswith(self.value)

    def __str__(self) -> str:
        return f"{self.label} {self.op} {quote(self.value)}"


@dataclass(frozen=True, slots=True)
class InSet:
    """``label in {...}`` or, with ``negated``, ``label not in {...}``; values sorted and unique."""

    label: str
    values: tuple[str, ...]
    negated: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(sorted(set(self.values))))

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        """Return whether the label's value is in the set (absent counts as not in it)."""
        actual = labels.get(self.label)
        found = actual is not None and actual in self.values
        return found != self.negated

    def __str__(self) -> str:
        op = "not in" if self.negated else "in"
        return f"{self.label} {op} {{{', '.join(quote(v) for v in self.values)}}}"


@dataclass(frozen=True, slots=True)
class Not:
    """``!operand``."""

    operand: Node

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        """Return the negation of the operand."""
        return not self.operand.evaluate(labels)

    def __str__(self) -> str:
        return f"!{self.operand}"


@dataclass(frozen=True, slots=True)
class And:
    """``a && b && ...`` with at least two operands, kept in the order written."""

    operands: tuple[Node, ...]

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        """Return whether every operand matches."""
        # A loop rather than all(): half the stack frames per level of a deeply nested selector.
        for op in self.operands:  # noqa: SIM110
            if not op.evaluate(labels):
                return False
        return True

    def __str__(self) -> str:
        return "(" + " && ".join(str(op) for op in self.operands) + ")"


@dataclass(frozen=True, slots=True)
class Or:
    """``a || b || ...`` with at least two operands, kept in the order written."""

    operands: tuple[Node, ...]

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        """Return whether any operand matches."""
        for op in self.operands:  # noqa: SIM110 - see And.evaluate
            if op.evaluate(labels):
                return True
        return False

    def __str__(self) -> str:
        return "(" + " || ".join(str(op) for op in self.operands) + ")"


Node: TypeAlias = All | Global | Has | Compare | InSet | Not | And | Or


def referenced_labels(node: Node) -> frozenset[str]:
    """Return every label name the tree mentions."""
    if isinstance(node, Has | Compare | InSet):
        return frozenset((node.label,))
    if isinstance(node, Not):
        return referenced_labels(node.operand)
    if isinstance(node, And | Or):
        return frozenset().union(*(referenced_labels(op) for op in node.operands))
    return frozenset()
