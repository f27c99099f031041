"""Field ownership as the API server tracks it for server-side apply (``metadata.managedFields``).

The model is the real one at leaf granularity: every manager owns a set of field paths; maps merge
key by key and lists are atomic (as ``x-kubernetes-list-type: atomic``, the default for custom
resources and for NetworkPolicy's rule lists). An apply that changes a field owned by another manager
is a conflict unless forced; a field the applier owned before and no longer sends is removed (unless
someone else owns it too). Non-apply writes (create, replace, merge patch) hand the fields they change
to their manager.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Final

Path = tuple[str, ...]

# Identity and server-managed fields: nobody owns them.
_UNOWNED_TOP: Final = frozenset({"apiVersion", "kind", "status"})
_UNOWNED_METADATA: Final = frozenset(
    {"name", "namespace", "resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink"}
)


@dataclass(slots=True)
class Managed:
    """The fields one manager owns and how it last wrote them (``Apply`` or ``Update``)."""

    operation: str
    paths: set[Path] = field(default_factory=set)
    time: str = ""


class ApplyConflictError(Exception):
    """An apply would change fields other managers own; ``conflicts`` lists (manager, path)."""

    def __init__(self, conflicts: list[tuple[str, Path]]) -> None:
        self.conflicts = conflicts
        listed = "; ".join(f'conflict with "{manager}": .{".".join(path)}' for manager, path in conflicts)
        super().__init__(f"Apply failed with {len(conflicts)} conflict(s): {listed}")


def owned_leaves(document: dict[str, Any]) -> dict[Path, Any]:
    """The ownable leaf fields of ``document`` and their values (lists and empty maps are leaves)."""
    leaves: dict[Path, Any] = {}
    for key, value in document.items():
        if key in _UNOWNED_TOP:
            continue
        if key == "metadata" and isinstance(value, dict):
            for meta_key, meta_value in value.items():
                if meta_key not in _UNOWNED_METADATA:
                    _collect(("metadata", meta_key), meta_value, leaves)
            continue
        _collect((key,), value, leaves)
    return leaves


def _collect(path: Path, value: Any, leaves: dict[Path, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, child in value.items():
            _collect((*path, str(key)), child, leaves)
    else:
        leaves[path] = value


_MISSING: Final = object()


def get_path(document: dict[str, Any], path: Path) -> Any:
    node: Any = document
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def set_path(document: dict[str, Any], path: Path, value: Any) -> None:
    node = document
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = copy.deepcopy(value)


def delete_path(document: dict[str, Any], path: Path) -> None:
    """Remove ``path`` and the maps it leaves empty (top-level sections such as ``spec`` stay)."""
    parents: list[tuple[dict[str, Any], str]] = []
    node: Any = document
    for key in path[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(key), dict):
            return
        parents.append((node, key))
        node = node[key]
    if isinstance(node, dict):
        node.pop(path[-1], None)
    for parent, key in reversed(parents[1:]):
        if parent[key] == {}:
            del parent[key]
        else:
            break


def _overlaps(paths: set[Path], path: Path) -> list[Path]:
    """Owned paths equal to, inside, or containing ``path``."""
    return [owned for owned in paths if owned[: len(path)] == path or path[: len(owned)] == owned]


def apply(
    current: dict[str, Any] | None,
    managers: dict[str, Managed],
    body: dict[str, Any],
    manager: str,
    *,
    force: bool,
    now: str,
) -> tuple[dict[str, Any], dict[str, Managed]]:
    """Server-side apply ``body`` as ``manager``: the new object and ownership (inputs untouched)."""
    applied = owned_leaves(body)
    if current is None:
        obj = {key: copy.deepcopy(value) for key, value in body.items() if key != "status"}
        return obj, {manager: Managed("Apply", set(applied), now)}
    owners = {name: Managed(m.operation, set(m.paths), m.time) for name, m in managers.items()}
    conflicts: list[tuple[str, Path]] = []
    for path, value in applied.items():
        if get_path(current, path) == value:
            continue  # same value: ownership is shared, never a conflict
        for name, managed in owners.items():
            if name != manager and _overlaps(managed.paths, path):
                conflicts.append((name, path))
    if conflicts and not force:
        raise ApplyConflictError(sorted(conflicts))
    for name, path in conflicts:
        owners[name].paths.difference_update(_overlaps(owners[name].paths, path))
    obj = copy.deepcopy(current)
    previous = owners[manager].paths if manager in owners and owners[manager].operation == "Apply" else set()
    for path in sorted(previous - applied.keys(), key=len, reverse=True):
        still_owned = any(_overlaps(m.paths, path) for name, m in owners.items() if name != manager)
        if not still_owned:
            delete_path(obj, path)
    for path, value in applied.items():
        set_path(obj, path, value)
    owners[manager] = Managed("Apply", set(applied), now)
    return obj, {name: m for name, m in owners.items() if m.paths}


def update(
    current: dict[str, Any] | None,
    managers: dict[str, Managed],
    new: dict[str, Any],
    manager: str,
    *,
    now: str,
) -> dict[str, Managed]:
    """Ownership after a non-apply write of ``new`` by ``manager``: it takes every field it changed."""
    before = owned_leaves(current) if current is not None else {}
    after = owned_leaves(new)
    changed = {path for path, value in after.items() if before.get(path, _MISSING) != value}
    removed = before.keys() - after.keys()
    owners = {name: Managed(m.operation, set(m.paths), m.time) for name, m in managers.items()}
    for managed in owners.values():
        for path in changed | removed:
            managed.paths.difference_update(_overlaps(managed.paths, path))
    if changed:
        mine = owners.get(manager)
        if mine is None or mine.operation != "Update":
            mine = owners[manager] = Managed("Update", mine.paths if mine else set())
        mine.paths.update(changed)
        mine.time = now
    return {name: m for name, m in owners.items() if m.paths}


def fields_v1(paths: set[Path]) -> dict[str, Any]:
    """``fieldsV1`` as the API server writes it: ``{"f:spec": {"f:selector": {}}}``."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return tree
