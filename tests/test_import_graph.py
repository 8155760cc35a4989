"""The layering of src/realign, read from its import graph: no import cycles, no stage package
importing another, and imports at module level except where deferring one saves loading a heavy
library. Imports inside functions count (they run when the function does, and a cycle hidden in
one is still a cycle); an ``if TYPE_CHECKING:`` import never runs and does not."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

SRC = Path(__file__).resolve().parents[1] / "src"
#: the stage packages (a command each: realign triage, score, train, eval, report); what two of
#: them share lives below both (realign.data, realign.objective, realign.judges, realign.metrics, ...)
STAGES = ("triage", "score", "train", "evaluate", "report")
#: cycles that another change of issue 32 removes, each with that change; a cycle listed here that
#: is gone fails too, so that it is taken off the list
KNOWN_CYCLES: dict[frozenset[str], str] = {}


#: libraries that take a tenth of a second or more to import (torch about a second), or that only
#: some commands need: imported inside the functions that use them, so that ``realign --help``, the
#: config and a rules judge load none of them
HEAVY = ("torch", "transformers", "datasets", "peft", "trl", "accelerate", "tokenizers", "huggingface_hub",
         "safetensors", "openai", "matplotlib", "numpy", "tqdm", "lm_eval")
#: what the command line loads before it parses a command: modules on this path may import inside a
#: function what it does not load (a command's implementation), and nothing else
ENTRY = "realign.cli"
#: modules whose imports inside functions another change of issue 32 moves, with that change
KNOWN_LAZY: dict[str, str] = {}


class Import(NamedTuple):
    module: str  #: the importing module
    target: str  #: the module it imports (dotted; a package's own module where a name of it is imported)
    line: int
    in_function: bool


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


def imports(root: Path, package: str) -> list[Import]:
    """Every import statement that runs in ``package``'s modules, one record per module it names,
    in source order."""
    known = modules(root, package)
    found = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skipped = _type_checking_only(tree)
        in_function = {id(inner) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for inner in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skipped:
                found += [Import(module, target, node.lineno, id(node) in in_function)
                          for target in _targets(node, module, path.name == "__init__.py", known)]
    return sorted(found, key=lambda i: (i.module, i.line))


def _run_first(target: str, module: str, known: dict) -> list[str]:
    """The modules of the package importing ``target`` from ``module`` runs: the packages above
    ``target`` (whose ``__init__`` runs first) up to ``module``'s own, and ``target``."""
    parts = target.split(".")
    names = [".".join(parts[:depth]) for depth in range(1, len(parts) + 1)]
    return [n for n in names if n in known and n != module and not module.startswith(n + ".")]


def import_graph(root: Path, package: str, *, in_functions: bool = True) -> dict[str, dict[str, int]]:
    """module -> {module of the package it imports (:func:`_run_first`): the line of the first
    such import}, counting imports anywhere in the module (``in_functions``) or at module level."""
    known = modules(root, package)
    graph: dict[str, dict[str, int]] = {module: {} for module in known}
    for imp in imports(root, package):
        if in_functions or not imp.in_function:
            for name in _run_first(imp.target, imp.module, known):
                graph[imp.module].setdefault(name, imp.line)
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


def deferred_light_imports(root: Path, package: str, entry: str = ENTRY, heavy=HEAVY) -> list[str]:
    """Each import inside a function that loads no heavy library (:data:`HEAVY`) — directly or
    through the module-level imports of the module it names — unless ``entry`` loads the
    importing module at start-up and not the imported one; as ``module:LINE imports target``."""
    found = imports(root, package)
    eager = import_graph(root, package, in_functions=False)
    libraries: dict[str, set[str]] = {module: set() for module in eager}
    for imp in found:
        if not imp.in_function and imp.target not in eager:
            libraries[imp.module].add(imp.target.split(".")[0])

    def loaded(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo += eager[module]
        return seen

    def loads_heavy(target: str) -> bool:
        if target not in eager:
            return target.split(".")[0] in heavy
        return any(libraries[m] & set(heavy) for m in loaded(target) | set(_run_first(target, "", eager)))

    startup = loaded(entry) if entry in eager else set()
    def deferred_by_entry(imp: Import) -> bool:
        return imp.module in startup and imp.target in eager and imp.target not in startup

    return list(dict.fromkeys(f"{imp.module}:{imp.line} imports {imp.target}" for imp in found
                              if imp.in_function and not loads_heavy(imp.target) and not deferred_by_entry(imp)))


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


def test_imports_inside_functions_only_defer_heavy_libraries():
    found = deferred_light_imports(SRC, "realign")
    unknown = [line for line in found if line.split(":")[0] not in KNOWN_LAZY]
    assert not unknown, ("imports inside functions that load no heavy library (import them at the top of the "
                         "module):\n" + "\n".join(unknown))
    gone = [f"{module} ({why})" for module, why in KNOWN_LAZY.items()
            if not any(f.startswith(module + ":") for f in found)]
    assert not gone, "no longer defers light imports: take it off KNOWN_LAZY:\n" + "\n".join(gone)


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
        "pkg/score/__init__.py": "",
        "pkg/score/run.py": "from ..shared import x\n\ndef f():\n    from ..train.methods import T\n",
        "pkg/train/__init__.py": "", "pkg/train/methods.py": "from . import other\n", "pkg/train/other.py": "",
    })
    assert stage_imports(import_graph(root, "pkg"), "pkg") == ["pkg.score.run:4 -> pkg.train.methods"]


def test_a_deferred_import_is_one_of_a_heavy_library_or_one_the_entry_point_does_not_load(tmp_path):
    root = _package(tmp_path, {
        "pkg/__init__.py": "", "pkg/light.py": "import json\n", "pkg/heavy.py": "import torch\n",
        "pkg/command.py": "from . import light\n",
        "pkg/cli.py": "from . import light\n\ndef run():\n    from . import command\n    from .light import json\n",
        "pkg/worker.py": "def f():\n    import json\n    import torch\n    from . import heavy, light\n",
    })
    assert deferred_light_imports(root, "pkg", entry="pkg.cli") == [
        "pkg.cli:5 imports pkg.light", "pkg.worker:2 imports json", "pkg.worker:4 imports pkg.light"]
