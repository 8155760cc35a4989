"""The repository stands alone: nothing cites files outside it, and every section of
docs/method.md that the code cites by name exists."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


SUFFIXES = (".py", ".md", ".yaml", ".yml", ".txt", ".toml", ".sh", ".cfg")


def tracked_text_files() -> list[Path]:
    """The repository's text files: git's list in a checkout, else every file outside hidden
    and build folders (an exported tree has no .git)."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout.strip():
        paths = [ROOT / name for name in listed.stdout.split()]
    else:
        paths = [p for p in ROOT.rglob("*") if not any(part.startswith(".") or part in ("build", "__pycache__")
                                                         or part.endswith(".egg-info")
                                                         for part in p.relative_to(ROOT).parts)]
    return [p for p in paths if p.suffix in SUFFIXES and p.is_file()]


def test_nothing_cites_files_outside_the_repository():
    """Every upper-case document a text names (the README-style names of project documents) is
    in the repository, and no Markdown path climbs out of it: what users and contributors need
    is here, in docs/. (Lower-case .md names are outputs, e.g. report.md.)"""
    present = {p.name for p in ROOT.rglob("*.md") if ".venv" not in p.parts}
    document = re.compile(r"(?<![\w.-])((?:\.\./)*[\w./-]*?\b[A-Z][A-Z0-9_-]*\.md)\b")
    hits = []
    for path in tracked_text_files():
        for name in document.findall(path.read_text(encoding="utf-8", errors="replace")):
            if name.startswith("../") or Path(name).name not in present:
                hits.append(f"{path.relative_to(ROOT)}: {name}")
        hits += [f"{path.relative_to(ROOT)}: a path out of the repository"
                 for _ in re.findall(r"\.\./[\w-]+/[\w-]+\.md", path.read_text(encoding="utf-8", errors="replace"))]
    assert hits == []


def test_cited_method_sections_exist():
    headings = {h.strip() for h in re.findall(r"^#+ (.+)$", (ROOT / "docs" / "method.md").read_text(), re.M)}
    cited = set()
    for path in tracked_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        cited |= set(re.findall(r'docs/method\.md,? "([^"]+)"', text))
    missing = {c for c in cited if not any(h.startswith(c) for h in headings)}
    assert cited and not missing, missing
