"""Resuming Stage 2: the scores already computed, one JSON line per record in a progress file
beside the output (``.OUT.partial``, or ``.OUT.rankK.partial`` per process under ``accelerate
launch``), headed by the provenance key of the settings and inputs that made them."""

from __future__ import annotations

import glob
import json
import os
import sys
from pathlib import Path

from ..runs.provenance import what_changed


def _read_progress(path: Path, made: dict) -> dict[str, float] | None:
    """The scores in one progress file, or None when it is missing or was made by other
    settings or inputs (then says so on stderr: its scores are not used)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        header = json.loads(lines[0]) if lines else {}
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(header, dict) or header.get("config") != made["key"]:
        if path.exists():
            before = header.get("produced_by") if isinstance(header, dict) else None
            print(f"score: not resuming from {path.name} ({what_changed(before, made)}); scoring from scratch",
                  file=sys.stderr)
        return None
    rows = {}
    for line in lines[1:]:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # torn by a kill; a resumed run appends after it
            continue
        rows[row["id"]] = row["score"]
    return rows


def progress_files(out: Path) -> list[Path]:
    """Every progress file of ``out``: ``.OUT.partial`` (one process) and ``.OUT.rankK.partial``."""
    return [out.with_name(f".{out.name}.partial"), *sorted(out.parent.glob(f".{glob.escape(out.name)}.rank*.partial"))]


class Progress:
    """Scores already computed, appended one JSON line per batch so that an interrupted run
    resumes; a line torn by a kill is ignored (appending starts on a fresh line). Each process
    appends to its own file and reads every process's, so a rerun with another number of
    processes resumes too."""

    def __init__(self, out: Path, rank: int | None, made: dict) -> None:
        self.path = out.with_name(f".{out.name}.partial" if rank is None else f".{out.name}.rank{rank}.partial")
        self.done: dict[str, float] = {}
        own = None
        for path in progress_files(out):
            rows = _read_progress(path, made)
            self.done.update(rows or {})
            own = rows if path == self.path else own
        if own is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            header = {"config": made["key"], "produced_by": made}
            self.path.write_text(json.dumps(header) + "\n", encoding="utf-8")
        elif not self.path.read_bytes().endswith(b"\n"):
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write("\n")

    def add(self, rows: dict[str, float]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            for rid, score in rows.items():
                fh.write(json.dumps({"id": rid, "score": score}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.done.update(rows)
