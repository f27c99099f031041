"""Calico's label selector language: parse once, match fast, print canonically.

>>> sel = parse_selector("app == 'frontend' && has(tier)")
>>> sel.matches({"app": "frontend", "tier": "web"})
True
>>> str(sel)
'(app == "frontend" && has(tier))'

``parse_selector`` raises ``SelectorError`` (a ``ValueError``) with the 0-based ``position`` of the
problem and a message naming what was expected and what was found. Semantics and canonical form are
Calico's (calico.md section 1); the tokenizer, parser, tree and compiler live in their own modules.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable, Mapping
from typing import Final

from ringfence.selector.ast import All, Global, Node, referenced_labels
from ringfence.selector.compiler import compile_matcher
from ringfence.selector.errors import SelectorError
from ringfence.selector.parser import parse
from ringfence.selector.requirements import Requirements, required_equalities, required_labels

__all__ = ["Selector", "SelectorError", "parse_selector", "required_equalities"]

_CACHE_SIZE: Final = 8192


class Selector:
    """A parsed selector: ``matches`` a label map, prints canonically, compares by canonical form.

    Build one with ``parse_selector``. Instances are immutable and hashable; two selectors are equal
    when their canonical forms are equal (``a in {"b", "a"}`` equals ``a in {"a", "b"}``).

    ``matches(labels)`` returns whether the selector matches a ``str -> str`` mapping (``global()``
    counts as true there). It is the compiled function itself, stored on the instance, so a call costs
    no extra method dispatch: the engine calls it millions of times.
    """

    __slots__ = ("_canonical", "_labels", "matches", "root", "source")

    matches: Callable[[Mapping[str, str]], bool]

    def __init__(self, root: Node, source: str | None = None) -> None:
        self.root: Final = root
        self._canonical: Final = str(root)
        self.source: Final = self._canonical if source is None else source
        self.matches = compile_matcher(root)
        self._labels: Final = referenced_labels(root)

    @property
    def is_all(self) -> bool:
        """True for the empty selector and ``all()`` (however parenthesised or doubly negated)."""
        return isinstance(self.root, All)

    @property
    def is_global(self) -> bool:
        """True when the selector is exactly ``global()`` (the namespace selector of non-namespaced things)."""
        return isinstance(self.root, Global)

    @property
    def unique_id(self) -> str:
        """Calico's stable id of the selector: ``s:`` and the unpadded base64url SHA-224 of ``s:`` + canonical form."""
        digest = hashlib.sha224(b"s:" + self._canonical.encode()).digest()
        return "s:" + base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def labels_referenced(self) -> frozenset[str]:
        """Return every label name the selector mentions."""
        return self._labels

    def required_labels(self) -> Requirements:
        """Return the labels any matching map must carry: allowed values, or ``None`` for any value.

        Sound (a matching map never violates it), not complete; ``{}`` when nothing is required.
        """
        return required_labels(self.root)

    def required_equalities(self) -> dict[str, frozenset[str]]:
        """Return the labels any matching map must hold with one of the given values (``==`` / ``in``)."""
        return required_equalities(self.root)

    def __str__(self) -> str:
        return self._canonical

    def __repr__(self) -> str:
        return f"Selector({self._canonical!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Selector):
            return self._canonical == other._canonical
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._canonical)

    def __reduce__(self) -> tuple[object, ...]:
        # The compiled matcher cannot be pickled; the canonical text rebuilds an equal selector.
        return (parse_selector, (self._canonical,))


def parse_selector(text: str) -> Selector:
    """Parse Calico selector ``text``; raise ``SelectorError`` (with ``.position``) if it is malformed.

    Results are cached by text, since the same selectors recur across policies and rules.
    """
    if not isinstance(text, str):
        msg = f"a selector is a str, not {type(text).__name__}"
        raise TypeError(msg)
    return _parse_cached(text)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _parse_cached(text: str) -> Selector:
    return Selector(parse(text), text)
