"""``realign run CONFIG.yaml``: triage → score → train → eval → report in one run directory.

A stage is skipped only when its output exists, was produced by exactly the same settings
and input contents (the ``produced_by`` key in its summary), and every output its summary
records (``outputs``) is still what the stage wrote (a deleted ``model/`` folder or a triaged
file cut by hand is not reused); otherwise it reruns and says why, and the stages after it see
a changed input and rerun too. A stage that was interrupted resumes (verdict and generation
caches, partial scores, training checkpoints — each keyed the same way), so rerunning the same
command after a crash continues where it stopped. Before the first stage, a pre-flight check
reads every input file, resolves the model and adapters, the devices and the judge's
credentials, and lists every problem at once. The pipeline asks each stage — its
:class:`realign.runs.stage.Stage` in the stage's package — for its pre-flight problems, its key and
its run, and never reaches into it. Layout::

    RUN/run_config.yaml             the resolved config
    RUN/triage/triaged.jsonl        (+ .summary.json)
    RUN/score/weighted.jsonl        (+ .summary.json)
    RUN/train/<method>/             adapter or model, train_summary.json
    RUN/eval/<method>/metrics.json  (+ generations.jsonl); eval/base for the starting model
    RUN/report.html, RUN/report.md  of this config's outputs (others under RUN: left out, with a note)

YAML: the shared keys (``model``, ``data``, ``policy``, ``judge``, ``seed``, ``device``) plus one
section per stage holding that stage's own options (see ``realign triage/score/train/eval``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import Field

from ..config import EvalConfig, JudgeConfig, ScoreConfig, StrictModel, TrainConfig, TriageConfig, load_yaml, resolved
from ..errors import RealignError
from ..evaluate.stage import EvalStage
from .files import check_output_paths, folder_lock, write_yaml
from ..judges.cache import check_cache_file
from ..modeling.loading import resolve_device
from ..modeling.sources import check_model_source
from ..policy import Policy, resolve_policy
from .provenance import what_changed
from ..reading import validate
from ..report.stage import ReportStage
from ..score.stage import ScoreStage
from .stage import Stage, outputs_changed
from ..train.methods import get_method
from ..train.stage import TrainStage
from ..triage.stage import TriageStage

class RunConfig(StrictModel):
    """The whole pipeline."""

    out: Path = Field(..., description="Run directory.")
    model: str = Field(..., description="The model to re-align (θ_ref).")
    data: str = Field(..., description="Old preference pairs.")
    policy: str = Field(..., description="The new policy (file or packaged name).")
    old_policy: str | None = Field(
        None, description="The policy the model was aligned to (file or packaged name): the report reads from the "
        "eval prompts' `expected` which slices the change of policy changed (without it, it ranks slices by change).")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="The judge of π_new, shared by triage and eval.")
    methods: list[str] = Field(default_factory=lambda: ["trace"], description="Methods to train and compare.")
    seed: int = Field(0, description="Seed of every stage.")
    device: str = Field("auto", description="cpu, cuda, cuda:N or auto, for every stage.")
    cache: Path | None = Field(None, description="Verdict and generation cache (default: <run>/cache.sqlite).")
    triage: dict[str, Any] = Field(default_factory=dict, description="Extra `realign triage` options.")
    score: dict[str, Any] = Field(default_factory=dict, description="Extra `realign score` options.")
    train: dict[str, Any] = Field(default_factory=dict, description="Extra `realign train` options.")
    eval: dict[str, Any] = Field(default_factory=dict, description="`realign eval` options (prompts is required).")
    report: bool = Field(True, description="Write report.html and report.md.")

    def cache_path(self) -> Path:
        return self.cache or self.out / "cache.sqlite"


class Pipeline:
    """Stage configs derived from one RunConfig; validated before anything runs."""

    def __init__(self, run: RunConfig, source: str) -> None:
        self.run = run
        self.source = source
        out = run.out
        policy = resolve_policy(run.policy)
        cache = run.cache_path()
        #: whether Stage 2 runs: some method reads impact weights (its ``needs_impact``)
        self.needs_scores = any([get_method(m).needs_impact for m in run.methods])  # every name checked
        triage = dict(run.triage)
        # corrective responses are looked for by default, whatever methods this invocation trains: a run
        # folder's triage is one output, shared by every method run in it; `corrective: null` turns them off
        triage.setdefault("corrective", {})
        if isinstance(triage.get("corrective"), dict):  # the run's model samples, on the run's device
            triage["corrective"] = {"model": run.model, "device": run.device, "seed": run.seed, **triage["corrective"]}
        self.triage = validate(
            TriageConfig,
            {**triage, "data": run.data, "policy": policy, "judge": resolved(run.judge), "cache": cache,
             "out": out / "triage" / "triaged.jsonl", "gold_out": out / "triage" / "gold.jsonl",
             "naive_out": out / "triage" / "naive.jsonl"},
            f"{source}: triage",
        )
        self.score = validate(
            ScoreConfig,
            {"seed": run.seed, "device": run.device, **run.score, "model": run.model,
             "data": str(self.triage.out), "out": out / "score" / "weighted.jsonl"},
            f"{source}: score",
        )
        train_data = str(self.score.out if self.needs_scores else self.triage.out)
        # the methods that sample the model judge their samples with the run's judge, policy and cache
        judged = {"policy": policy, "judge": resolved(run.judge), "cache": cache}
        self.train = {
            m: validate(
                TrainConfig,
                {"seed": run.seed, "device": run.device, **run.train, "model": run.model, "data": train_data,
                 "method": m, "out": out / "train" / m, **(judged if get_method(m).samples else {})},
                f"{source}: train",
            )
            for m in run.methods
        }
        self.eval = self._eval_configs(policy, cache)
        #: the stages in the order they run, each built once: what its pre-flight check read is what it runs with
        self.stages = self._stages()
        #: the reports of this config's outputs (None: the config turns them off)
        self.report = ReportStage(out, [s.summary for s in self.stages], self._inputs()) if run.report else None

    def _eval_configs(self, policy: str | Path, cache: Path) -> dict[str, EvalConfig]:
        """One evaluation per model state: ``base`` (the run's model) and each method's result."""
        run, source, out = self.run, self.source, self.run.out
        if "prompts" not in run.eval:
            raise RealignError(f"{source}: field 'eval.prompts': required (held-out prompts to evaluate on)")
        found = {}
        for name in ["base", *run.methods]:
            trained = self.train.get(name)
            adapter = str(trained.out / "adapter") if trained is not None and trained.finetune == "lora" else None
            model = str(trained.out / "model") if trained is not None and trained.finetune == "full" else run.model
            section = dict(run.eval)
            if isinstance(section.get("generator"), dict):  # a server serving every run: {name} names this one
                section["generator"] = {k: v.replace("{name}", name) if isinstance(v, str) else v
                                        for k, v in section["generator"].items()}
            found[name] = validate(
                EvalConfig,
                {"seed": run.seed, "device": run.device, **section, "model": model, "adapter": adapter,
                 "reference": run.model if trained is not None and trained.finetune == "full" else None,
                 "label": name, "policy": policy, "judge": resolved(run.judge), "cache": cache,
                 "out": out / "eval" / name / "metrics.json"},
                f"{source}: eval",
            )
        return found

    def _stages(self) -> list[Stage]:
        """The stages in the order they run (:class:`realign.runs.stage.Stage`): triage, score when a
        method reads impact weights, one training per method, one evaluation per model state."""
        found: list[Stage] = [TriageStage(self.triage)]
        if self.needs_scores:
            found.append(ScoreStage(self.score))
        return found + [TrainStage(cfg) for cfg in self.train.values()] + [EvalStage(cfg) for cfg in self.eval.values()]

    def _inputs(self) -> dict[str, str | Path | None]:
        """The run's input files, by config field: no output of the run's own may be one."""
        first = self.eval["base"]
        return {"model": self.run.model, "data": self.run.data, "policy": self.triage.policy,
                "eval.prompts": first.prompts, "eval.attacks": first.attacks,
                "eval.attack_templates": first.attack_templates, "eval.text": first.text,
                "cache": self.run.cache_path()}

    def preflight(self) -> None:
        """Before the first stage: the run's own inputs (the old policy, the verdict cache, the
        devices named, the model) and what each stage says could stop it (its ``preflight``:
        every file it will read exists and parses, its adapters resolve, its judge can be built
        and decide, no output destroys an input). One error lists every problem."""
        problems: list[str] = []

        def check(action, *args) -> None:
            try:
                action(*args)
            except RealignError as exc:
                problems.append(str(exc))

        if self.run.old_policy is not None:
            check(lambda: Policy.load(resolve_policy(self.run.old_policy)))
        check(check_cache_file, self.run.cache_path())
        for field, device in _devices(self.run, self.triage):
            check(_check_device, self.source, field, device)
        check(check_model_source, self.run.model, "model")
        for stage in [*self.stages, self.report] if self.report is not None else self.stages:
            stage.preflight(check)
        out = self.run.out
        check(check_output_paths, self._inputs(), {"the run's run_config.yaml": out / "run_config.yaml"})
        if problems:
            unique = list(dict.fromkeys(problems))
            raise RealignError(f"{len(unique)} problem(s) before the first stage: " + " | ".join(unique))

    def execute(self, progress: bool = True) -> dict:
        """Run every stage whose output is missing, was produced by other settings or inputs
        (each stage's summary records its ``produced_by`` key) or changed since it was written
        (the summary's ``outputs``); say why a stage reruns. The run folder is locked meanwhile
        (:func:`realign.runs.files.folder_lock`): a second run of it stops."""
        self.preflight()
        with folder_lock(self.run.out):
            return self._execute(progress)

    def _execute(self, progress: bool) -> dict:
        """The stages, under the run folder's lock; then the run's config, and the reports of
        what this config's stages made."""
        done = {stage.name: _bring_up_to_date(stage, progress) for stage in self.stages}
        # written once every output beside it was produced by it
        write_yaml(self.run.out / "run_config.yaml", resolved(self.run))
        if self.report is not None:
            done[self.report.name] = self.report.run(progress)["report"]
        return done


def _devices(run: RunConfig, triage: TriageConfig) -> list[tuple[str, str]]:
    """(config field, device) of every device the run will use: the shared ``device``, any
    stage section's own, and a model judge's, oracle's or corrective sampler's."""
    found = [("device", run.device)]
    found += [(f"{name}.device", str(getattr(run, name)["device"]))
              for name in ("score", "train", "eval") if "device" in getattr(run, name)]
    if run.judge.backend == "hf":
        found.append(("judge.device", run.judge.device))
    if triage.oracle is not None and triage.oracle.backend == "hf":
        found.append(("triage.oracle.device", triage.oracle.device))
    if triage.corrective is not None:
        found.append(("triage.corrective.device", triage.corrective.device))
    return found


def _check_device(source: str, field: str, device: str) -> None:
    """A device this machine does not have (``cuda`` without CUDA) is refused before the
    first stage, not when the stage that uses it starts."""
    try:
        resolve_device(device)
    except RealignError as exc:
        raise RealignError(f"{source}: field '{field}': {exc}") from None


def _bring_up_to_date(stage: Stage, progress: bool) -> str:
    """Run ``stage`` unless its summary records the key it would be produced by now and outputs
    still as it wrote them; say which, and why it reruns."""
    expected = stage.produced_by()
    if stage.summary.exists():
        before, outputs = _recorded(stage.summary)
        if before is None or before.get("key") != expected["key"]:
            stale = what_changed(before, expected)
        else:  # the same settings and inputs: reused only if its outputs are what it wrote
            stale = outputs_changed(stage.summary, outputs)
        if stale is None:
            print(f"[{stage.name}] skipped: {stage.summary} was produced by the same settings and inputs", file=sys.stderr)
            return "skipped (up to date)"
        print(f"[{stage.name}] rerunning: {stale}", file=sys.stderr)
    else:
        print(f"[{stage.name}] running", file=sys.stderr)
    stage.run(progress)
    return "ran"


def _recorded(path: Path) -> tuple[dict | None, dict | None]:
    """The ``produced_by`` and ``outputs`` records of a stage's summary, each None when the
    summary is unreadable or lacks it."""
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    if not isinstance(summary, dict):
        return None, None
    made, outputs = summary.get("produced_by"), summary.get("outputs")
    return (made if isinstance(made, dict) else None), (outputs if isinstance(outputs, dict) else None)


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> Pipeline:
    raw = {**load_yaml(path), **(overrides or {})}
    return Pipeline(validate(RunConfig, raw, str(path)), str(path))

