"""What a selector requires of any label map it matches: the hint behind the engine's label index."""

from __future__ import annotations

from ringfence.selector.ast import And, Compare, Comparison, Has, InSet, Node, Not, Or

# label -> allowed values (``None``: present with any value). Sound: every matching map satisfies it.
Requirements = dict[str, frozenset[str] | None]


def required_labels(node: Node) -> Requirements:
    """Return the labels every matching map must carry, each with its allowed values or ``None`` for any.

    Sound, not complete: a label listed here is present, with one of the listed values, in every label
    map that ``node`` matches; the empty dict claims nothing.
    """
    if isinstance(node, Has):
        return {node.label: None}
    if isinstance(node, Compare):
        if node.op is Comparison.EQ:
            return {node.label: frozenset((node.value,))}
        if node.op is Comparison.NE:
            return {}
        return {node.label: None}
    if isinstance(node, InSet):
        return {} if node.negated else {node.label: frozenset(node.values)}
    if isinstance(node, Not):
        return _negated_requirements(node.operand)
    if isinstance(node, And):
        return _conjunction([required_labels(op) for op in node.operands])
    if isinstance(node, Or):
        return _disjunction([required_labels(op) for op in node.operands])
    return {}


def required_equalities(node: Node) -> dict[str, frozenset[str]]:
    """Return the labels that must hold one of a known set of values for any match (see ``required_labels``)."""
    return {label: values for label, values in required_labels(node).items() if values is not None}


def _negated_requirements(node: Node) -> Requirements:
    """Requirements of ``!node``: ``!(a != "x")`` is ``a == "x"``, ``!(a not in S)`` is ``a in S``; De Morgan."""
    if isinstance(node, Compare) and node.op is Comparison.NE:
        return {node.label: frozenset((node.value,))}
    if isinstance(node, InSet) and node.negated:
        return {node.label: frozenset(node.values)}
    if isinstance(node, Not):
        return required_labels(node.operand)
    if isinstance(node, Or):
        return _conjunction([_negated_requirements(op) for op in node.operands])
    if isinstance(node, And):
        return _disjunction([_negated_requirements(op) for op in node.operands])
    return {}


def _conjunction(parts: list[Requirements]) -> Requirements:
    merged: Requirements = {}
    for part in parts:
        for label, values in part.items():
            if label not in merged:
                merged[label] = values
            else:
                known = merged[label]
                merged[label] = values if known is None else known if values is None else known & values
    return merged


def _disjunction(parts: list[Requirements]) -> Requirements:
    merged = dict(parts[0])
    for part in parts[1:]:
        for label in list(merged):
            if label not in part:
                del merged[label]
                continue
            known, values = merged[label], part[label]
            merged[label] = None if known is None or values is None else known | values
    return merged
