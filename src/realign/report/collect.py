"""Reading runs for the report: the result files below each run directory, read tolerantly
and labelled for display (see :mod:`realign.report`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Sequence

from ..errors import RealignError
from ..metrics.costs import COSTS, FROM_TRIAGE, corrective_spent
from ..metrics.stats import number

SEARCH_DEPTH = 2
"""How many directory levels below a run directory are searched for result files."""
METRICS_NAME = "metrics.json"
TRAIN_NAME = "train_summary.json"
SUMMARY_SUFFIX = ".summary.json"
WINRATE_HINT = "winrate"
"""Files with this in their name are read too: ``realign winrate`` results (``"stage": "winrate"``)."""


@dataclass
class Source:
    """One result file: its kind (eval, triage, score, train), where it is, and its content."""

    kind: str
    path: Path
    run: Path
    data: dict
    label: str = ""


@dataclass
class RunData:
    """Everything found for a set of run directories, labelled for display."""

    evals: list[Source] = field(default_factory=list)
    triage: list[Source] = field(default_factory=list)
    score: list[Source] = field(default_factory=list)
    train: list[Source] = field(default_factory=list)
    winrate: list[Source] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Files that could not be used, one line each."""

    def by_kind(self, kind: str) -> list[Source]:
        return {"eval": self.evals, "triage": self.triage, "score": self.score, "train": self.train,
                "winrate": self.winrate}[kind]

    @property
    def all(self) -> list[Source]:
        return [*self.evals, *self.triage, *self.score, *self.train, *self.winrate]

    @property
    def empty(self) -> bool:
        return not self.all


def _candidates(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    found: list[Path] = []
    for depth in range(SEARCH_DEPTH + 1):
        pattern = "/".join(["*"] * depth + ["*.json"])
        for path in sorted(root.glob(pattern)):
            rel = path.relative_to(root).parts
            if any(part.startswith(".") for part in rel):
                continue  # hidden folders and the temporary files of atomic writes
            if _wanted(path.name):
                found.append(path)
    return found


def _wanted(name: str) -> bool:
    """Result files by name (so tokenizer and adapter JSON files are never parsed)."""
    return name in (METRICS_NAME, TRAIN_NAME) or name.endswith(SUMMARY_SUFFIX) or WINRATE_HINT in name


def _kind(path: Path, data: dict, named: bool) -> str | None:
    """Which stage wrote ``data`` (None: not a file the report uses)."""
    stage = data.get("stage")
    name = path.name
    if name == METRICS_NAME or (named and stage == "eval"):
        if stage == "eval" or (stage is None and isinstance(data.get("tpa"), dict)):
            return "eval"
        return None
    if name == TRAIN_NAME or (named and stage == "train"):
        return "train" if stage in (None, "train") else None
    if stage == "winrate" and isinstance(data.get("summary"), dict):
        return "winrate"
    if name.endswith(SUMMARY_SUFFIX) or named:
        if stage == "triage":
            return "triage"
        if stage == "score":
            return "score"
    return None


def display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def collect(run_dirs: Sequence[str | Path], only: Collection[str | Path] | None = None) -> RunData:
    """Find and read the result files of every run directory (or named metrics file).
    ``only``: the result files to use (``realign run``'s outputs under its current config);
    any other found is left out with a note, since it was made under other settings or
    inputs (a method since dropped from ``methods``, under the policy of the time)."""
    if not run_dirs:
        raise RealignError("report: give at least one run directory")
    found = RunData()
    seen: set[Path] = set()
    wanted = None if only is None else {Path(p).resolve() for p in only}
    for run in map(Path, run_dirs):
        if not run.exists():
            raise RealignError(f"{run}: run directory not found")
        for path in _candidates(run):
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            if wanted is not None and resolved not in wanted:
                found.notes.append(f"{display(path)}: left out, not an output of this run's current config "
                                   "(made by an earlier run, under other settings or inputs)")
                continue
            named = path == run
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
                found.notes.append(f"{display(path)}: skipped, not readable JSON ({reason})")
                continue
            if not isinstance(data, dict):
                if named or path.name in (METRICS_NAME, TRAIN_NAME):
                    found.notes.append(f"{display(path)}: skipped, not a JSON object")
                continue
            kind = _kind(path, data, named)
            if kind is None:
                if named:
                    found.notes.append(f"{display(path)}: skipped, not a metrics or summary file")
                continue
            found.by_kind(kind).append(Source(kind, path, run.parent if named else run, data))
    _label_all(found)
    return found


def run_name(run: Path) -> str:
    return run.resolve().name or str(run)


def _label_all(found: RunData) -> None:
    """Display labels: the eval's own label, else the run directory's name (with the
    sub-folder when one run holds several files of a kind); duplicates get their path."""
    run_label: dict[Path, str] = {}
    evals_per_run: dict[Path, list[Source]] = {}
    for src in found.evals:
        evals_per_run.setdefault(src.run, []).append(src)
    for run, sources in evals_per_run.items():
        if len(sources) == 1 and isinstance(sources[0].data.get("label"), str) and sources[0].data["label"]:
            run_label[run] = sources[0].data["label"]
    for src in found.winrate:
        a, b = src.data.get("a") or {}, src.data.get("b") or {}
        src.label = f"{a.get('label', 'A')} vs {b.get('label', 'B')}"
    for kind in ("eval", "triage", "score", "train"):
        sources = found.by_kind(kind)
        per_run: dict[Path, int] = {}
        for src in sources:
            per_run[src.run] = per_run.get(src.run, 0) + 1
        for src in sources:
            base = run_label.get(src.run) or run_name(src.run)
            if kind == "eval" and isinstance(src.data.get("label"), str) and src.data["label"]:
                src.label = src.data["label"]
                continue
            if per_run[src.run] > 1:
                rel = src.path.parent.relative_to(src.run) if src.path.parent != src.run else Path(src.path.stem)
                base = f"{base}/{rel.as_posix()}"
            if kind == "train":
                method = src.data.get("method")
                name = method.get("name") if isinstance(method, dict) else method if isinstance(method, str) else None
                if name and name.replace("_", "-") not in base.replace("_", "-"):
                    base = f"{base} ({name})"
            src.label = base
        counts: dict[str, int] = {}
        for src in sources:
            counts[src.label] = counts.get(src.label, 0) + 1
        for src in sources:
            if counts[src.label] > 1:
                src.label = f"{src.label} [{display(src.path)}]"


def run_cost(train: dict, triage: dict | None = None) -> dict[str, float | None] | None:
    """What a method's run cost, from its ``train_summary.json`` (``train``) ``budget``: judge
    calls (distinct responses judged, cache hits included: the budget's unit, so a rerun costs
    what the first run did), generated tokens, training tokens and wall seconds of the train
    stage (training, plus self-distill's sampling). A method trained on the triage (the budget
    counts the triage's judgements of its records) also pays the triage's corrective search
    (``triage``: that triage's summary): its candidates judged and tokens generated — judge calls
    unknown (None) for a search recorded before its candidates judged were. None: a summary
    written before budgets were, whose cost is unknown (never 0)."""
    budget = train.get("budget")
    if not isinstance(budget, dict):
        return None
    cost = {name: number(budget.get(name)) for name in COSTS}
    if budget.get("judge_calls_from") == FROM_TRIAGE:
        for name, spent in corrective_spent(triage).items():
            cost[name] = None if cost[name] is None or spent is None else cost[name] + spent
    return cost


def _path(value) -> str | None:
    """A path as a summary records it, normalised (not resolved: the summaries of a run folder
    moved since still name the same path)."""
    return os.path.normpath(value) if isinstance(value, str) and value else None


def _config_path(data: dict, key: str) -> str | None:
    config = data.get("config")
    return _path(config.get(key)) if isinstance(config, dict) else None


def triage_of(train: Source, found: RunData) -> Source | None:
    """The triage summary among ``found`` whose records ``train`` trained on: the one whose
    output is its data, or the data of the score stage whose output is (paths as the summaries
    record them); None when none is."""
    data = _config_path(train.data, "data")
    scored = {_config_path(s.data, "out"): _config_path(s.data, "data") for s in found.score}
    data = scored.get(data, data)
    return next((t for t in found.triage if data is not None and _config_path(t.data, "out") == data), None)


def eval_costs(found: RunData) -> dict[Path, dict[str, float | None] | None]:
    """By metrics file: what the run that trained each evaluated model cost (:func:`run_cost`;
    the train summary whose saved model or adapter the evaluation read; None: it predates
    budgets). An evaluation no train summary among ``found`` made (a base model's) is absent."""
    made = {_path(t.data.get("saved")): t for t in found.train}
    made.pop(None, None)
    costs = {}
    for src in found.evals:
        train = made.get(_path(src.data.get("adapter") or src.data.get("model")))
        if train is not None:
            triage = triage_of(train, found)
            costs[src.path] = run_cost(train.data, triage.data if triage is not None else None)
    return costs
