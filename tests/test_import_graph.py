"""The layering of src/realign, read from its import graph: no import cycles, and no stage package
importing another. Imports inside functions count (they run when the function does, and a cycle
hidden in one is still a cycle); an ``if TYPE_CHECKING:`` import never runs and does not."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
#: the stage packages (a command each: realign triage, score, train, eval, report); what two of
#: them share lives below both (realign.data, realign.objective, realign.judges, realign.metrics, ...)
STAGES = ("triage", "score", "train", "evaluate", "report")
#: cycles that another change of issue 32 removes, each with that change; a cycle listed here that
#: is gone fails too, so that it is taken off the list
KNOWN_CYCLES = {
    frozenset({"realign.train.online", "realign.train.run"}):
        "issue 32 item 5, train/run.py split by job: the Trainer and term dataset below run.py and online.py",
}


def modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` under ``root`` by dotted name (a package by its own name)."""
    out = {}
    for path in sorted((root / package.replace(".", "/")).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of the nodes under an ``if TYPE_CHECKING:`` (never run)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    return skipped


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: dict) -> list[str]:
    """The modules an import statement runs: ``import a.b``; ``from .x import y`` resolved
    against ``module``, ``y`` itself where it is a submodule, else ``x``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    return [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source for alias in node.names]


def import_graph(root: Path, package: str) -> dict[str, dict[str, int]]:
    """module -> {module of the package it imports (and the packages above that one, whose
    ``__init__`` runs first, up to its own): the line of the first such import}, counting
    imports anywhere in the module, functions included."""
    known = modules(root, package)
    graph: dict[str, dict[str, int]] = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skipped = _type_checking_only(tree)
        edges: dict[str, int] = {}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in skipped:
                continue
            for target in _targets(node, module, path.name == "__init__.py", known):
                parts = target.split(".")
                for depth in range(1, len(parts) + 1):
                    name = ".".join(parts[:depth])
                    if name in known and name != module and not module.startswith(name + "."):
                        edges.setdefault(name, node.lineno)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[tuple[list[str], set[str]]]:
    """Each strongly connected set of modules (Tarjan) with one cycle through it, ``[a, b, ..., a]``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            members = set()
            while True:
                w = stack.pop()
                members.add(w)
                if w == v:
                    break
            if len(members) > 1:
                found.append(members)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [(_cycle_in(graph, members), members) for members in found]


def _cycle_in(graph: dict[str, dict[str, int]], members: set[str]) -> list[str]:
    """A shortest cycle through the first (by name) of ``members``, which are strongly connected."""
    start = min(members)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v]):
            if w == start:
                return paths[v] + [start]
            if w in members and w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    raise AssertionError(f"{sorted(members)} are not strongly connected")  # pragma: no cover


def _shown(graph: dict[str, dict[str, int]], cycle: list[str], members: set[str]) -> str:
    """The cycle with the line of each import; the other modules of its strongly connected set after it."""
    shown = " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"
    others = sorted(members - set(cycle))
    return shown + (f"; in one loop with it: {', '.join(others)}" if others else "")


def stage_imports(graph: dict[str, dict[str, int]], package: str, stages=STAGES) -> list[str]:
    """Each import of a stage package's module from another stage package's, as ``a:LINE -> b``."""

    def stage(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if module.startswith(package + ".") and len(parts) > 1 and parts[1] in stages else None

    def named(edges: dict[str, int], b: str) -> bool:  # a package is named only where no module of it is
        return not any(c.startswith(b + ".") and line == edges[b] for c, line in edges.items())

    return [f"{a}:{line} -> {b}" for a, edges in sorted(graph.items()) for b, line in sorted(edges.items())
            if stage(a) and stage(b) and stage(a) != stage(b) and named(edges, b)]


def test_no_import_cycles():
    graph = import_graph(SRC, "realign")
    found = cycles(graph)
    unknown = [_shown(graph, cycle, members) for cycle, members in found if frozenset(members) not in KNOWN_CYCLES]
    assert not unknown, "import cycles:\n" + "\n".join(unknown)
    gone = [f"{sorted(c)} ({why})" for c, why in KNOWN_CYCLES.items() if c not in {frozenset(m) for _, m in found}]
    assert not gone, "no longer cycles: take them off KNOWN_CYCLES:\n" + "\n".join(gone)


def test_no_stage_package_imports_another():
    found = stage_imports(import_graph(SRC, "realign"), "realign")
    assert not found, ("a stage package imports another (what two stages share belongs below both):\n"
                       + "\n".join(found))


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_the_graph_counts_imports_in_functions_relative_ones_and_submodules_named_by_from(tmp_path):
    root = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    from . import b\n",
        "pkg/b.py": "from .sub import c\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "from ..a import f\n",
        "pkg/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n",
    })
    graph = import_graph(root, "pkg")
    assert graph["pkg.a"] == {"pkg.b": 2}
    assert graph["pkg.b"] == {"pkg.sub": 1, "pkg.sub.c": 1}
    assert graph["pkg.d"] == {}
    [(cycle, members)] = cycles(graph)
    assert cycle == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"] and members == {"pkg.a", "pkg.b", "pkg.sub.c"}
    assert _shown(graph, cycle, members) == "pkg.a (line 2) -> pkg.b (line 1) -> pkg.sub.c (line 1) -> pkg.a"


def test_a_stage_importing_another_is_named_with_its_line(tmp_path):
    root = _package(tmp_path, {
        "pkg/__init__.py": "", "pkg/shared.py": "",
        "pkg/score/__init__.py": "", "pkg/score/run.py": "from ..shared import x\n\ndef f():\n    from ..train.methods import T\n",
        "pkg/train/__init__.py": "", "pkg/train/methods.py": "from . import other\n", "pkg/train/other.py": "",
    })
    assert stage_imports(import_graph(root, "pkg"), "pkg") == ["pkg.score.run:4 -> pkg.train.methods"]
