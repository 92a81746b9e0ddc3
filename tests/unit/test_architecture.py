"""The dependency rules of docs/architecture.md, checked on the source (every import, function-level ones included).

- no import cycle among the project's modules;
- no runtime module (trainer/, stream/, scorer/, fraudscore/ outside fraudscore/dev/) imports a
  development tool (fraudscore.dev);
- trainer/, scorer/ and stream/ do not import each other, without exception;
- cases/ (the case store, records, labels and the analysts' command, shared by stream/, trainer/ and the
  console) imports no service.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("fraudscore", "cases", "stream", "scorer", "trainer", "console")
GENERATED = "fraudscore.v1"
DEV = "fraudscore.dev"
# Cycles tolerated for now (each one a to-do, not a pattern): none. The last one, fraudscore.model <->
# fraudscore.fastpath, went when the artifact's names and Scores moved below both (fraudscore/artifact.py).
KNOWN_CYCLES: list[list[str]] = []
SERVICES = ("trainer", "scorer", "stream", "console")
# Shared packages below the services: they may import each other's modules but no service's.
SHARED = ("fraudscore", "cases")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = _module_name(path)
            if name != GENERATED and not name.startswith(GENERATED + "."):
                modules[name] = path
    return modules


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its source (module level, functions, TYPE_CHECKING)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module pkg.mod; ``from mod import name`` the module mod.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for target in targets:
            if target == GENERATED or target.startswith(GENERATED + "."):
                continue  # generated protobuf code imports nothing of the project's
            while target and target not in known:  # ``import a.b.c`` of a non-module attribute: its module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_function_level_and_relative_imports() -> None:
    graph = import_graph()
    assert "stream.pipeline" in graph["stream.cli"]  # imported inside cli.main only
    assert "stream.records" in graph["stream.rules"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_the_project_modules() -> None:
    graph = import_graph()
    found = [
        [f"{m} -> {', '.join(sorted(graph[m] & set(component)))}" for m in component]
        for component in cycles(graph)
        if component not in KNOWN_CYCLES
    ]
    assert found == [], "modules importing each other (move the shared part down a layer): " + repr(found)


def test_no_runtime_module_imports_a_development_tool() -> None:
    offenders = {
        name: sorted(t for t in targets if t == DEV or t.startswith(DEV + "."))
        for name, targets in import_graph().items()
        if not (name == DEV or name.startswith(DEV + ".")) and name != "fraudscore.cli"
    }
    assert {name: dev for name, dev in offenders.items() if dev} == {}


def _service(module: str) -> str | None:
    top = module.split(".", 1)[0]
    return top if top in SERVICES else None


def test_services_do_not_import_each_other() -> None:
    offenders = sorted(
        f"{name} -> {target}"
        for name, targets in import_graph().items()
        for target in targets
        if _service(name) and _service(target) and _service(name) != _service(target)
    )
    assert offenders == [], "a service importing another (move the shared part into fraudscore/): " + repr(offenders)


def test_shared_packages_import_no_service() -> None:
    offenders = sorted(
        f"{name} -> {target}"
        for name, targets in import_graph().items()
        for target in targets
        if name.split(".", 1)[0] in SHARED
        and _service(target)
        and name != "fraudscore.cli"
        and not name.startswith(DEV)
    )
    assert offenders == [], "a shared package importing a service (move the shared part down): " + repr(offenders)


def test_the_trainer_reads_labels_through_the_cases_package() -> None:
    graph = import_graph()
    assert "cases.labels" in graph["trainer.supervise"]
    assert "cases.store" in graph["trainer.recalibrate"]


def test_the_console_decides_through_the_cases_package() -> None:
    graph = import_graph()
    assert "cases.casebook" in graph["console.app"]
    assert "cases.casebook" in graph["cases.cli"]
