"""Compile a selector tree to one Python function, so matching costs a single call.

The generated source is built only from fixed fragments and generated names (``k0``, ``v0``, ...);
label names and values reach the code as constants in its namespace, never as source text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeAlias

from ringfence.selector.ast import All, And, Compare, Comparison, Global, Has, InSet, Node, Not, Or

Matcher: TypeAlias = Callable[[Mapping[str, str]], bool]

_PRESENT_AND: dict[Comparison, str] = {
    Comparison.CONTAINS: "({v} in L[{k}])",
    Comparison.STARTS_WITH: "L[{k}].startswith({v})",
    Comparison.ENDS_WITH: "L[{k}].endswith({v})",
}


def compile_matcher(node: Node) -> Matcher:
    """Return a function equivalent to ``node.evaluate`` (the label map is its only argument)."""
    generator = _Generator()
    source = f"lambda L: {generator.expression(node)}"
    namespace: dict[str, object] = {"__builtins__": {}, **generator.constants}
    # Safe: ``source`` holds no user text (see the module docstring).
    matcher: Matcher = eval(compile(source, "<selector>", "eval"), namespace)  # noqa: S307
    return matcher


class _Generator:
    def __init__(self) -> None:
        self.constants: dict[str, object] = {}
        self._names: dict[tuple[str, object], str] = {}

    def _constant(self, prefix: str, value: object) -> str:
        key = (prefix, value)
        name = self._names.get(key)
        if name is None:
            name = f"{prefix}{len(self._names)}"
            self._names[key] = name
            self.constants[name] = value
        return name

    def expression(self, node: Node) -> str:
        if isinstance(node, All | Global):
            return "True"
        if isinstance(node, Has):
            return f"{self._constant('k', node.label)} in L"
        if isinstance(node, Compare):
            k = self._constant("k", node.label)
            v = self._constant("v", node.value)
            if node.op is Comparison.EQ:
                return f"L.get({k}) == {v}"
            if node.op is Comparison.NE:
                return f"L.get({k}) != {v}"
            return f"({k} in L and {_PRESENT_AND[node.op].format(k=k, v=v)})"
        if isinstance(node, InSet):
            k = self._constant("k", node.label)
            s = self._constant("s", frozenset(node.values))
            return f"L.get({k}) {'not in' if node.negated else 'in'} {s}"
        if isinstance(node, Not):
            return f"not {self._operand(node.operand, parenthesise=(And, Or))}"
        if isinstance(node, And):
            return " and ".join(self._operand(op, parenthesise=(Or,)) for op in node.operands)
        return " or ".join(self.expression(op) for op in node.operands)

    def _operand(self, node: Node, parenthesise: tuple[type[And | Or], ...]) -> str:
        # ``not`` binds tighter than ``and``/``or``, ``and`` tighter than ``or``: only those groups need parentheses.
        text = self.expression(node)
        return f"({text})" if isinstance(node, parenthesise) else text
