"""Typed access to one parsed document, collecting every problem with its field path.

A ``Reader`` never raises: a field of the wrong type is reported and read as absent, so one pass
over a document finds all of its problems. ``null`` counts as absent, as in Kubernetes.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Iterator
from enum import StrEnum
from typing import Any, TypeVar

from ringfence.manifests import checks
from ringfence.selector import SelectorError, parse_selector

E = TypeVar("E", bound=StrEnum)


def describe(value: object) -> str:
    """How a value reads in an error message (``a string``, ``an integer 3``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def join(path: str, key: str | int) -> str:
    """Extend a field path: ``join("spec", "egress")`` is ``spec.egress``, ``join(p, 1)`` is ``p[1]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class Reader:
    """Reads values out of parsed YAML, recording ``(path, problem, position)`` in ``problems``.

    ``position`` is the 0-based offset of a selector error inside the selector's text, else None.
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.problems: list[tuple[str, str, int | None]] = []

    def fail(self, path: str, message: str, position: int | None = None) -> None:
        """Record a problem at ``path`` (relative to the document)."""
        where = join(self.prefix, path) if self.prefix and path else self.prefix or path
        self.problems.append((where, message, position))

    def mapping(self, value: Any, path: str, fields: Collection[str], ignored: Collection[str] = ()) -> dict[str, Any]:
        """``value`` as a mapping whose keys are among ``fields`` (``ignored`` keys are dropped silently).

        Unknown keys are reported (with the closest known spelling); a non-mapping reads as ``{}``.
        """
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {describe(value)}")
            return {}
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.fail(path, f"field names must be strings, got {describe(key)}")
            elif key in fields:
                if item is not None:
                    result[key] = item
            elif key not in ignored:
                close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(join(path, key), f"unknown field{hint}")
        return result

    def text(self, value: Any, path: str) -> str | None:
        """``value`` as a string, or None (reported) when it is something else."""
        if isinstance(value, str):
            return value
        hint = " (quote it)" if isinstance(value, bool | int | float) else ""
        self.fail(path, f"expected a string, got {describe(value)}{hint}")
        return None

    def field_text(self, fields: dict[str, Any], key: str, path: str) -> str | None:
        """The string field ``key``, None when absent or wrong."""
        return None if key not in fields else self.text(fields[key], join(path, key))

    def items(self, fields: dict[str, Any], key: str, path: str) -> Iterator[tuple[str, Any]]:
        """The elements of the list field ``key`` with their paths (nothing when absent or not a list)."""
        value = fields.get(key)
        if value is None:
            return
        if not isinstance(value, list):
            self.fail(join(path, key), f"expected a list, got {describe(value)}")
            return
        for index, item in enumerate(value):
            yield join(join(path, key), index), item

    def texts(self, fields: dict[str, Any], key: str, path: str) -> tuple[str, ...]:
        """The list-of-strings field ``key``."""
        found = (self.text(item, item_path) for item_path, item in self.items(fields, key, path))
        return tuple(item for item in found if item is not None)

    def string_map(self, fields: dict[str, Any], key: str, path: str, *, labels: bool = False) -> dict[str, str]:
        """The string-to-string mapping ``key``; with ``labels`` keys and values are checked as labels."""
        value = fields.get(key)
        if value is None:
            return {}
        where = join(path, key)
        if not isinstance(value, dict):
            self.fail(where, f"expected a mapping of strings, got {describe(value)}")
            return {}
        result: dict[str, str] = {}
        for name, item in value.items():
            if not isinstance(name, str):
                self.fail(where, f"keys must be strings, got {describe(name)}")
                continue
            text = self.text(item, join(where, name))
            problem = checks.qualified_name_problem(name)
            if problem is None and labels and text is not None:
                problem = checks.label_value_problem(text)
            if problem:
                self.fail(join(where, name), problem)
            elif text is not None:
                result[name] = text
        return result

    def flag(self, fields: dict[str, Any], key: str, path: str) -> bool:
        """The boolean field ``key`` (False when absent)."""
        value = fields.get(key, False)
        if isinstance(value, bool):
            return value
        self.fail(join(path, key), f"expected true or false, got {describe(value)}")
        return False

    def integer(self, value: Any, path: str, low: int, high: int) -> int | None:
        """``value`` as an integer within ``[low, high]``."""
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected an integer, got {describe(value)}")
            return None
        if not low <= value <= high:
            self.fail(path, f"{value} is out of range {low}-{high}")
            return None
        return value

    def number(self, fields: dict[str, Any], key: str, path: str) -> float | None:
        """The finite number field ``key`` as a float."""
        if key not in fields:
            return None
        value = fields[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(join(path, key), f"expected a number, got {describe(value)}")
            return None
        if not math.isfinite(value):
            self.fail(join(path, key), f"expected a finite number, got {value}")
            return None
        return float(value)

    def choice(self, fields: dict[str, Any], key: str, path: str, enum: type[E]) -> E | None:
        """The enumerated field ``key`` (exact spelling, as Calico requires)."""
        return None if key not in fields else self.enum_value(fields[key], join(path, key), enum)

    def enum_value(self, value: Any, path: str, enum: type[E]) -> E | None:
        """``value`` as a member of ``enum``, by its exact value."""
        text = self.text(value, path)
        if text is None:
            return None
        for member in enum:
            if member.value == text:
                return member
        allowed = ", ".join(member.value for member in enum)
        self.fail(path, f"{text!r} is not one of {allowed}")
        return None

    def selector(self, fields: dict[str, Any], key: str, path: str, *, allow_global: bool = False) -> str | None:
        """The selector field ``key`` as written, checked by the selector parser; ``""`` reads as absent."""
        text = self.field_text(fields, key, path)
        if not text:
            return None
        try:
            parsed = parse_selector(text)
        except SelectorError as error:
            self.fail(join(path, key), str(error), error.position)
            return None
        if "global()" in text and not (allow_global and parsed.is_global):
            where = "alone as a rule's namespaceSelector" if allow_global else "in a rule's namespaceSelector"
            self.fail(join(path, key), f"global() may only be used {where}")
            return None
        return text
