"""The repository stands alone: nothing cites files outside it, and every section of
docs/method.md that the code cites by name exists."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = ("METHOD.md", "DESIGN.md", "../shared")


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
    this = Path(__file__).resolve()
    hits = [f"{p.relative_to(ROOT)}: {word}" for p in tracked_text_files() if p != this
            for word in OUTSIDE if word in p.read_text(encoding="utf-8", errors="replace")]
    assert hits == []


def test_cited_method_sections_exist():
    headings = {h.strip() for h in re.findall(r"^#+ (.+)$", (ROOT / "docs" / "method.md").read_text(), re.M)}
    cited = set()
    for path in tracked_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        cited |= set(re.findall(r'docs/method\.md,? "([^"]+)"', text))
    missing = {c for c in cited if not any(h.startswith(c) for h in headings)}
    assert cited and not missing, missing
