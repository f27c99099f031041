"""The layering rules, checked on the source: the core is pure, and services do not import each other.

The same rules are import-linter contracts in ``.importlinter`` (``make lint``); this walk catches a
breach in ``make test`` too, imports inside functions and ``importlib.import_module("...")`` included.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]

# Libraries that do I/O, and the services: none of them may enter the pure core.
CORE_FORBIDDEN = (
    "services",
    "asyncpg",
    "redis",
    "celery",
    "starlette",
    "strawberry",
    "uvicorn",
    "httpx",
    "kubernetes",
    "socket",
    "subprocess",
    "sqlite3",
    "urllib",
    "requests",
)
SERVICES = ("services.api", "services.worker", "services.collector", "services.sync")
SHARED = "services.common"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (or module.name for `from module import name`)
    line: int


@dataclass(frozen=True)
class Rule:
    """Modules under ``source`` may not import modules under any of ``forbidden`` (except ``allowed``)."""

    source: str
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()

    def breaches(self, imports: Iterator[Import]) -> list[str]:
        return [
            f"{found.module} (line {found.line}) imports {found.target}"
            for found in imports
            if within(found.module, self.source)
            and any(within(found.target, name) for name in self.forbidden)
            and not any(within(found.target, name) for name in self.allowed)
        ]


RULES = (
    Rule("ringfence", CORE_FORBIDDEN),
    *(Rule(service, ("services",), allowed=(service, SHARED)) for service in SERVICES),
    Rule(SHARED, ("services",), allowed=(SHARED,)),
)


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> Iterator[Import]:
    """Every import in a file, relative ones resolved, wherever it appears."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield Import(module, base, node.lineno)
            for alias in node.names:
                yield Import(module, f"{base}.{alias.name}", node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield Import(module, node.args[0].value, node.lineno)


def all_imports(root: Path, packages: tuple[str, ...] = ("ringfence", "services")) -> Iterator[Import]:
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            yield from imports_of(path, root)


def breaches(root: Path) -> list[str]:
    return [breach for rule in RULES for breach in rule.breaches(all_imports(root))]


def test_the_repository_keeps_its_layers():
    assert breaches(REPOSITORY) == []


def test_the_walk_sees_the_core_and_the_services():
    modules = {found.module for found in all_imports(REPOSITORY)}
    assert "ringfence.model" in modules
    assert "services.common.settings" in modules


def plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in {"ringfence/__init__.py": "", "services/__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"ringfence/io.py": "import socket\n"}, "ringfence.io (line 1) imports socket"),
        ({"ringfence/io.py": "from urllib.parse import quote\n"}, "ringfence.io (line 1) imports urllib.parse"),
        (
            {"ringfence/engine/run.py": "def f():\n    import asyncpg.pool\n"},
            "ringfence.engine.run (line 2) imports asyncpg.pool",
        ),
        (
            {"ringfence/x.py": "import importlib\nimportlib.import_module('redis')\n"},
            "ringfence.x (line 2) imports redis",
        ),
        ({"ringfence/x.py": "from services.common import settings\n"}, "ringfence.x (line 1) imports services.common"),
        (
            {"services/api/__init__.py": "", "services/api/app.py": "from services import worker\n"},
            "services.api.app (line 1) imports services.worker",
        ),
        (
            {"services/api/__init__.py": "", "services/api/app.py": "from ..collector import tail\n"},
            "services.api.app (line 1) imports services.collector",
        ),
        (
            {"services/common/__init__.py": "", "services/common/jobs.py": "import services.worker.tasks\n"},
            "services.common.jobs (line 1) imports services.worker.tasks",
        ),
        (
            {"services/worker/__init__.py": "", "services/worker/run.py": "from services.cli import main\n"},
            "services.worker.run (line 1) imports services.cli",
        ),
    ],
)
def test_planted_breaches_are_reported(tmp_path, files, expected):
    assert expected in breaches(plant(tmp_path, files))


@pytest.mark.parametrize(
    "files",
    [
        {"ringfence/x.py": "from ringfence.model import Tier\nimport yaml\nfrom . import model\n"},
        {
            "services/api/__init__.py": "",
            "services/api/app.py": "from services.common import db\nimport asyncpg\n",
        },
        {"services/worker/__init__.py": "", "services/worker/run.py": "from . import tasks\nfrom .tasks import run\n"},
        {"services/cli.py": "import services.api\nimport services.worker\n"},
    ],
)
def test_allowed_imports_pass(tmp_path, files):
    assert breaches(plant(tmp_path, files)) == []
