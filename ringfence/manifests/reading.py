"""Text to raw documents: multi-document YAML, JSON (one or several values), ``kind: List`` unpacked.

The YAML schema is the one Kubernetes tools read (YAML 1.1 booleans and numbers) without the two
surprises PyYAML adds on top: timestamps stay strings and ``20:30`` stays a string (a port range)
instead of becoming the base-60 number 1230. A key written twice in one mapping is an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Final

import yaml

try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # PyYAML built without libyaml: the same schema, parsed in Python
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

from ringfence.manifests.errors import ManifestError, ManifestIssue

# JSON is read as JSON (it may be indented with tabs, which YAML refuses); `{a: 1}` is YAML flow style.
_LOOKS_LIKE_JSON: Final = re.compile(r"\s*(\{\s*[\"}]|\[\s*[\[{\]\"])")
_TAG_INT: Final = "tag:yaml.org,2002:int"
_TAG_FLOAT: Final = "tag:yaml.org,2002:float"
_TAG_TIMESTAMP: Final = "tag:yaml.org,2002:timestamp"

_INT: Final = re.compile(
    r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+)$""",
    re.VERBOSE,
)
_FLOAT: Final = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)


class _Loader(_SafeLoader):
    """The safe loader without timestamps and base-60 numbers, refusing duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in {_TAG_INT, _TAG_FLOAT, _TAG_TIMESTAMP}]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_TAG_INT, _INT, list("-+0123456789"))
_Loader.add_implicit_resolver(_TAG_FLOAT, _FLOAT, list("-+0123456789."))


@dataclass(frozen=True, slots=True)
class RawDocument:
    """One resource document as parsed: its document number, path prefix (``items[2].``) and body."""

    document: int
    prefix: str
    body: Any


def read_documents(text: str) -> tuple[list[RawDocument], list[ManifestIssue]]:
    """Parse ``text`` into raw resource documents; raise ``ManifestError`` on a syntax error.

    Returns the documents and the structural issues found (a document that is not a mapping, a
    ``List`` without ``items``); empty documents are skipped but still counted.
    """
    bodies = _parse_json(text) if _LOOKS_LIKE_JSON.match(text) else _parse_yaml(text)
    documents: list[RawDocument] = []
    issues: list[ManifestIssue] = []
    for number, body in enumerate(bodies, start=1):
        if body is None:
            continue
        if isinstance(body, dict) and body.get("kind") == "List":
            _unpack_list(number, body, documents, issues)
        else:
            documents.append(RawDocument(number, "", body))
    return documents, issues


def _unpack_list(number: int, body: dict[str, Any], documents: list[RawDocument], issues: list[ManifestIssue]) -> None:
    unknown = sorted(str(key) for key in body if key not in {"apiVersion", "kind", "items", "metadata"})
    issues.extend(ManifestIssue(number, "unknown field in a List", key, kind="List") for key in unknown)
    items = body.get("items")
    if items is None:
        items = []
    if not isinstance(items, list):
        issues.append(ManifestIssue(number, "expected a list of resources", "items", kind="List"))
        return
    for index, item in enumerate(items):
        prefix = f"items[{index}]"
        if isinstance(item, dict) and item.get("kind") == "List":
            issues.append(ManifestIssue(number, "a List inside a List is not supported", f"{prefix}.kind"))
        elif item is not None:
            documents.append(RawDocument(number, prefix, item))


def _parse_yaml(text: str) -> list[Any]:
    bodies: list[Any] = []
    try:
        # One at a time, so a syntax error is numbered after the documents read before it.
        for body in yaml.load_all(text, Loader=_Loader):
            bodies.append(body)  # noqa: PERF402
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = error.problem or error.context or "invalid YAML"
        raise ManifestError([ManifestIssue(len(bodies) + 1, f"YAML syntax error at {where}{problem}")]) from None
    except yaml.YAMLError as error:
        raise ManifestError([ManifestIssue(len(bodies) + 1, f"YAML syntax error: {error}")]) from None
    return bodies


def _parse_json(text: str) -> list[Any]:
    """One or several concatenated JSON values; a top-level array is a list of documents."""
    decoder = json.JSONDecoder()
    bodies: list[Any] = []
    position = _skip_space(text, 0)
    while position < len(text):
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            message = f"JSON syntax error at line {error.lineno}, column {error.colno}: {error.msg}"
            raise ManifestError([ManifestIssue(len(bodies) + 1, message)]) from None
        if isinstance(value, list):
            bodies.extend(value)
        else:
            bodies.append(value)
        position = _skip_space(text, position)
    return bodies


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position
