"""The folders are the layers: core (no Django), protocols (the dialects), processing.

The import graph is read from the source with ast (every import, also those inside
functions, which is where cycles used to hide) and checked against the rules.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "chunky_redis"
CORE, PROTOCOLS, PROCESSING = (
    "chunky_redis.core",
    "chunky_redis.protocols",
    "chunky_redis.processing",
)


def module_name(path: Path, root: Path = PACKAGE.parent) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str], root: Path = PACKAGE.parent) -> set[str]:
    """Every module ``path`` imports: the package's own by name, others as written."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                # "from . import x" names a module; "from .m import x" a name in m.
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = list(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in graph.items():
        for target in targets:
            if _within(module, CORE):
                # The core imports nothing of Django, Celery, or the layers above it.
                if target.split(".")[0] in ("django", "celery", "django_redis") or (
                    _within(target, "chunky_redis") and not _within(target, CORE)
                ):
                    found.append(f"{module} imports {target}")
            if _within(module, PROTOCOLS) and _within(target, PROCESSING):
                found.append(f"{module} imports {target} (inject a callable instead)")
            if _within(module, PROCESSING) and _within(target, PROTOCOLS):
                found.append(f"{module} imports {target}")
    found += [" -> ".join(cycle) for cycle in cycles(graph)]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of the package's own modules (packages' __init__ aside)."""
    own = {m: {t for t in ts if t in graph and t != m} for m, ts in graph.items()}
    found, state, stack = [], {}, []

    def visit(module: str) -> None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(own[module]):
            if state.get(target) == "open":
                found.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(own):
        if module not in state:
            visit(module)
    return found


def test_the_layers_hold():
    graph = import_graph()
    assert {CORE + ".uploads", PROTOCOLS + ".chunky", PROCESSING + ".finalize"} <= set(graph)
    assert violations(graph) == []


@pytest.mark.parametrize(
    "module, target",
    [
        (CORE + ".uploads", "django.conf"),
        (CORE + ".session", "chunky_redis.conf"),
        (CORE + ".store", PROCESSING + ".signals"),
        (PROTOCOLS + ".chunky", PROCESSING + ".completion"),
        (PROCESSING + ".finalize", PROTOCOLS + ".base"),
        (CORE + ".session", CORE + ".uploads"),  # the old uploads <-> session cycle
        (PROCESSING + ".finalize", PROCESSING + ".completion"),  # the old runtime ... cycle
    ],
)
def test_a_forbidden_import_is_caught(module, target):
    graph = import_graph()
    graph[module] = graph[module] | {target}
    assert violations(graph)


def test_the_reader_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "chunky_redis" / "core" / "late.py"
    source.parent.mkdir(parents=True)
    source.write_text("def f():\n    from ..processing import tasks\n    import django\n")
    found = imports_of(source, {"chunky_redis.processing.tasks"}, root=tmp_path)
    assert found == {"chunky_redis.processing.tasks", "django"}


@pytest.mark.live  # (a fresh interpreter: a process)
def test_the_core_loads_without_django():
    """In a fresh interpreter, the whole core imports and Django is never loaded."""
    core = sorted(m for m in import_graph() if _within(m, CORE))
    script = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in core)
        + "assert not [m for m in sys.modules if m.split('.')[0] in ('django', 'celery')]\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=PACKAGE.parent)
