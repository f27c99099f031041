"""Policy and rule selectors built exactly as libcalico-go hands them to Felix.

Calico turns the v3 fields into one selector over the endpoint's combined labels (``identity.py``):

* NetworkPolicy: ``(selector) && projectcalico.org/namespace == '<ns>'``, then
  ``&& <serviceAccountSelector with labels prefixed pcsa.>``.
* GlobalNetworkPolicy: ``(selector) && <namespaceSelector prefixed pcns.>`` with every ``all()`` of
  the result turned into ``has(projectcalico.org/namespace)``; then the service-account selector, with
  ``all()`` turned into ``has(projectcalico.org/serviceaccount)``. Without a namespaceSelector a GNP
  also selects host endpoints.
* Rule ``source``/``destination``: the namespace part is the ``pcns.``-prefixed namespaceSelector
  (``all()`` -> any namespaced endpoint, ``global()`` -> only non-namespaced things) or, in a
  namespaced policy, ``projectcalico.org/namespace == '<ns>'``; it is added as soon as the rule has a
  selector, a serviceAccounts match, a notSelector or a namespaceSelector (a nets/ports-only rule is
  not scoped). ``serviceAccounts`` is ``projectcalico.org/serviceaccount in {names}`` and the
  ``pcsa.``-prefixed selector. ``notSelector`` is used as written (not namespace-scoped).

Calico performs the ``all()``/``global()`` substitutions on selector text; they are done here on the
syntax tree, which only differs for the literal strings ``"all()"``/``"global()"`` inside a value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ringfence.engine.identity import (
    ALWAYS_PRESENT_FOR_PODS,
    NAMESPACE_LABEL,
    NAMESPACE_PREFIX,
    SERVICE_ACCOUNT_LABEL,
    SERVICE_ACCOUNT_PREFIX,
    Identity,
)
from ringfence.engine.tristate import MAYBE, NO, YES, Tri, tri_all, tri_any, tri_not
from ringfence.model import EntityRule
from ringfence.selector import Selector, parse_selector
from ringfence.selector.ast import All, And, Compare, Comparison, Global, Has, InSet, Node, Not, Or, referenced_labels


def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


def _root(text: str) -> Node:
    return parse_selector(text).root


def _and(*nodes: Node) -> Node:
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))


def prefix_labels(node: Node, prefix: str) -> Node:
    """``node`` with every label name prefixed (Calico's ``PrefixVisitor``)."""
    if isinstance(node, Has):
        return Has(prefix + node.label)
    if isinstance(node, Compare):
        return Compare(prefix + node.label, node.op, node.value)
    if isinstance(node, InSet):
        return InSet(prefix + node.label, node.values, node.negated)
    if isinstance(node, Not):
        return Not(prefix_labels(node.operand, prefix))
    if isinstance(node, And):
        return And(tuple(prefix_labels(op, prefix) for op in node.operands))
    if isinstance(node, Or):
        return Or(tuple(prefix_labels(op, prefix) for op in node.operands))
    return node


def substitute(node: Node, *, all_: Node | None = None, global_: Node | None = None) -> Node:
    """``node`` with ``all()`` and/or ``global()`` replaced by the given trees."""
    if isinstance(node, All):
        return all_ if all_ is not None else node
    if isinstance(node, Global):
        return global_ if global_ is not None else node
    if isinstance(node, Not):
        return Not(substitute(node.operand, all_=all_, global_=global_))
    if isinstance(node, And):
        return And(tuple(substitute(op, all_=all_, global_=global_) for op in node.operands))
    if isinstance(node, Or):
        return Or(tuple(substitute(op, all_=all_, global_=global_) for op in node.operands))
    return node


def _namespace_equals(namespace: str) -> Node:
    return Compare(NAMESPACE_LABEL, Comparison.EQ, namespace)


def namespaced_policy_selector(selector: str, service_account_selector: str, namespace: str) -> Node:
    """The effective selector of a (Staged)NetworkPolicy or converted Kubernetes policy."""
    node = _namespace_equals(namespace) if _blank(selector) else _and(_root(selector), _namespace_equals(namespace))
    if not _blank(service_account_selector):
        node = _and(node, prefix_labels(_root(service_account_selector), SERVICE_ACCOUNT_PREFIX))
    return node


def global_policy_selector(selector: str, namespace_selector: str | None, service_account_selector: str) -> Node:
    """The effective selector of a (Staged)GlobalNetworkPolicy."""
    node: Node | None = None if _blank(selector) else _root(selector)
    if namespace_selector is not None and not _blank(namespace_selector):
        ns_node = prefix_labels(_root(namespace_selector), NAMESPACE_PREFIX)
        node = ns_node if node is None else _and(node, ns_node)
        node = substitute(node, all_=Has(NAMESPACE_LABEL))
    if not _blank(service_account_selector):
        sa_node = prefix_labels(_root(service_account_selector), SERVICE_ACCOUNT_PREFIX)
        node = sa_node if node is None else _and(node, sa_node)
        node = substitute(node, all_=Has(SERVICE_ACCOUNT_LABEL))
    return All() if node is None else node


def entity_rule_selectors(rule: EntityRule, policy_namespace: str | None) -> tuple[Node | None, Node | None]:
    """The positive selector (namespace scoping included) and the notSelector of one entity rule."""
    parts: list[Node] = []
    accounts = rule.service_accounts
    if accounts is not None:
        account_parts: list[Node] = []
        if not _blank(accounts.selector):
            account_parts.append(prefix_labels(_root(accounts.selector), SERVICE_ACCOUNT_PREFIX))
        if accounts.names:
            account_parts.append(InSet(SERVICE_ACCOUNT_LABEL, accounts.names))
        if account_parts:
            parts.append(_and(*account_parts))
    if not _blank(rule.selector):
        assert rule.selector is not None
        parts.append(_root(rule.selector))
    selector = _and(*parts) if parts else None

    ns_node: Node | None = None
    if rule.namespace_selector is not None and not _blank(rule.namespace_selector):
        ns_node = substitute(
            prefix_labels(_root(rule.namespace_selector), NAMESPACE_PREFIX),
            all_=Has(NAMESPACE_LABEL),
            global_=Not(Has(NAMESPACE_LABEL)),
        )
    elif policy_namespace:
        ns_node = _namespace_equals(policy_namespace)
    scoped = selector is not None or not _blank(rule.not_selector) or not _blank(rule.namespace_selector)
    if ns_node is not None and scoped:
        selector = ns_node if selector is None else _and(ns_node, selector)
    not_selector = None if _blank(rule.not_selector) else _root(rule.not_selector or "")
    return selector, not_selector


def tri_evaluate(node: Node, identity: Identity) -> Tri:
    """Kleene evaluation of ``node`` on ``identity``, ``MAYBE`` wherever a label's value is unknown."""
    labels = identity.labels
    if isinstance(node, All | Global):
        return YES
    if isinstance(node, Has | Compare | InSet):
        if identity.label_unknown(node.label):
            # a pod always has a service account, only its name and labels may be unknown
            return YES if isinstance(node, Has) and node.label in ALWAYS_PRESENT_FOR_PODS else MAYBE
        return YES if node.evaluate(labels) else NO
    if isinstance(node, Not):
        return tri_not(tri_evaluate(node.operand, identity))
    if isinstance(node, And):
        return tri_all(tri_evaluate(op, identity) for op in node.operands)
    return tri_any(tri_evaluate(op, identity) for op in node.operands)


def _reads_unknowable(node: Node) -> bool:
    return any(
        label == SERVICE_ACCOUNT_LABEL or label.startswith(SERVICE_ACCOUNT_PREFIX) for label in referenced_labels(node)
    )


@dataclass(slots=True, eq=False)
class CompiledSelector:
    """A selector with per-identity results cached (identities are interned, so the cache stays small)."""

    selector: Selector
    unknowable: bool
    _cache: dict[int, Tri] = field(default_factory=dict, repr=False)

    @property
    def root(self) -> Node:
        """The syntax tree."""
        return self.selector.root

    def evaluate(self, identity: Identity) -> Tri:
        """Whether the selector matches ``identity`` (``MAYBE`` when it reads an unknown label)."""
        result = self._cache.get(identity.uid)
        if result is None:
            if self.unknowable and identity.has_unknown_labels:
                result = tri_evaluate(self.selector.root, identity)
            else:
                result = YES if self.selector.matches(identity.labels) else NO
            self._cache[identity.uid] = result
        return result

    def required_equalities(self) -> dict[str, frozenset[str]]:
        """Labels any match must carry with one of the listed values (the policy index's hint)."""
        return self.selector.required_equalities()

    def __str__(self) -> str:
        return str(self.selector)


class SelectorPool:
    """Interns compiled selectors by canonical text, so policies and rules sharing one share its cache."""

    __slots__ = ("_pool",)

    def __init__(self) -> None:
        self._pool: dict[str, CompiledSelector] = {}

    def get(self, node: Node) -> CompiledSelector:
        """The compiled selector of ``node``."""
        text = str(node)
        found = self._pool.get(text)
        if found is None:
            found = CompiledSelector(Selector(node), _reads_unknowable(node))
            self._pool[text] = found
        return found
