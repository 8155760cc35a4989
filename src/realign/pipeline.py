"""``realign run CONFIG.yaml``: triage → score → train → eval → report in one run directory.

A stage is skipped only when its output exists, was produced by exactly the same settings
and input contents (the ``produced_by`` key in its summary), and every output its summary
records (``outputs``) is still what the stage wrote (a deleted ``model/`` folder or a triaged
file cut by hand is not reused); otherwise it reruns and says why, and the stages after it see
a changed input and rerun too. A stage that was interrupted resumes (verdict and generation
caches, partial scores, training checkpoints — each keyed the same way), so rerunning the same
command after a crash continues where it stopped. Before the first stage, a pre-flight check
reads every input file, resolves the model and adapters, the devices and the judge's
credentials, and lists every problem at once. Layout::

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

from .config import EvalConfig, JudgeConfig, ScoreConfig, StrictModel, TrainConfig, TriageConfig, load_yaml, resolved
from .data import read_pairs
from .errors import RealignError
from .evaluate.attacks import load_templates
from .files import check_output_paths, folder_lock, write_yaml
from .judges import make_judge
from .judges.cache import check_cache_file
from .judges.oracle import make_oracle
from .judges.rules import RulesJudge
from .metrics.prompts import load_rows
from .models import check_model_source, resolve_device
from .policy import Policy, resolve_policy
from .provenance import what_changed
from .reading import validate
from .report import build_report
from .score import run as score
from .stage import outputs_changed, summary_path
from .train.methods import get_method
from .train.trainer_args import check_trainer_args


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
        if "corrective" not in triage and any(get_method(m).reads_y_c for m in run.methods):
            triage["corrective"] = {}  # on by default for a method that reads y_c; `corrective: null` turns it off
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
        if "prompts" not in run.eval:
            raise RealignError(f"{source}: field 'eval.prompts': required (held-out prompts to evaluate on)")
        self.eval = {}
        for name in ["base", *run.methods]:
            trained = self.train.get(name)
            adapter = str(trained.out / "adapter") if trained is not None and trained.finetune == "lora" else None
            model = str(trained.out / "model") if trained is not None and trained.finetune == "full" else run.model
            section = dict(run.eval)
            if isinstance(section.get("generator"), dict):  # a server serving every run: {name} names this one
                section["generator"] = {k: v.replace("{name}", name) if isinstance(v, str) else v
                                        for k, v in section["generator"].items()}
            self.eval[name] = validate(
                EvalConfig,
                {"seed": run.seed, "device": run.device, **section, "model": model, "adapter": adapter,
                 "reference": run.model if trained is not None and trained.finetune == "full" else None,
                 "label": name, "policy": policy, "judge": resolved(run.judge), "cache": cache,
                 "out": out / "eval" / name / "metrics.json"},
                f"{source}: eval",
            )

    def preflight(self) -> None:
        """Before the first stage: every file the run will read exists and parses (the eval
        prompts hold rows), the model and adapters resolve (offline: from the local cache),
        hosted judges have credentials, the rules judge has rules that can decide, the verdict
        cache is one (or new), and every device named exists on this machine. One error lists
        every problem."""
        from .evaluate.run import load_rows_or_text

        problems: list[str] = []

        def check(action, *args) -> None:
            try:
                action(*args)
            except RealignError as exc:
                problems.append(str(exc))

        check(lambda: read_pairs(self.triage.data, split=self.triage.split, skip_invalid=self.triage.skip_invalid,
                                 invert_order=self.triage.invert_order))
        check(Policy.load, self.triage.policy)
        if self.run.old_policy is not None:
            check(lambda: Policy.load(resolve_policy(self.run.old_policy)))
        check(make_judge, self.triage.judge)
        if self.triage.judge.backend == "rules":
            check(lambda: RulesJudge().compiled(Policy.load(self.triage.policy)))
        check(check_cache_file, self.run.cache_path())
        for field, device in self._devices():
            check(self._check_device, field, device)
        if self.triage.oracle is not None:
            check(make_oracle, self.triage.oracle)
        check(check_model_source, self.run.model, "model")
        for cfg in self.train.values():
            if cfg.adapter is not None:
                check(check_model_source, cfg.adapter, "adapter")
        if any(cfg.trainer_args for cfg in self.train.values()):
            check(check_trainer_args, next(iter(self.train.values())).trainer_args)
        first = self.eval["base"]
        check(lambda: load_rows(first.prompts, Policy.load(first.policy)))
        if first.attacks:
            check(load_rows, first.attacks)
            check(load_templates, first.attack_templates)
        if first.text:
            check(load_rows_or_text, first.text)
        self._check_outputs(check)
        if problems:
            unique = list(dict.fromkeys(problems))
            raise RealignError(f"{len(unique)} problem(s) before the first stage: " + " | ".join(unique))

    def _devices(self) -> list[tuple[str, str]]:
        """(config field, device) of every device the run will use: the shared ``device``, any
        stage section's own, and a model judge's, oracle's or corrective sampler's."""
        run = self.run
        found = [("device", run.device)]
        found += [(f"{name}.device", str(getattr(run, name)["device"]))
                  for name in ("score", "train", "eval") if "device" in getattr(run, name)]
        if run.judge.backend == "hf":
            found.append(("judge.device", run.judge.device))
        if self.triage.oracle is not None and self.triage.oracle.backend == "hf":
            found.append(("triage.oracle.device", self.triage.oracle.device))
        if self.triage.corrective is not None:
            found.append(("triage.corrective.device", self.triage.corrective.device))
        return found

    def _check_device(self, field: str, device: str) -> None:
        """A device this machine does not have (``cuda`` without CUDA) is refused before the
        first stage, not when the stage that uses it starts."""
        try:
            resolve_device(device)
        except RealignError as exc:
            raise RealignError(f"{self.source}: field '{field}': {exc}") from None

    def _check_outputs(self, check) -> None:
        """Every stage's outputs and the run's own (config, reports) checked by ``check`` before the
        first stage (:func:`realign.files.check_output_paths`): no output is an input."""
        from .evaluate import run as evaluate
        from .train import run as train
        from .triage import run as triage

        check(triage._check_outputs, self.triage)
        if self.needs_scores:
            check(score._check_outputs, self.score)
        for cfg in self.train.values():
            check(train._check_outputs, cfg)
        for cfg in self.eval.values():
            check(evaluate._check_outputs, cfg)
        first, out = self.eval["base"], self.run.out
        check(check_output_paths,
              {"model": self.run.model, "data": self.run.data, "policy": self.triage.policy,
               "eval.prompts": first.prompts, "eval.attacks": first.attacks, "eval.attack_templates": first.attack_templates,
               "eval.text": first.text, "cache": self.run.cache_path()},
              {"the run's run_config.yaml": out / "run_config.yaml", "the run's report.html": out / "report.html",
               "the run's report.md": out / "report.md"},
              {"the run's report_files/": out / "report_files"})

    def execute(self, progress: bool = True) -> dict:
        """Run every stage whose output is missing, was produced by other settings or inputs
        (each stage's summary records its ``produced_by`` key) or changed since it was written
        (the summary's ``outputs``); say why a stage reruns. The run folder is locked meanwhile
        (:func:`realign.files.folder_lock`): a second run of it stops."""
        self.preflight()
        with folder_lock(self.run.out):
            return self._execute(progress)

    def _execute(self, progress: bool) -> dict:
        """The stages, under the run folder's lock."""
        from .triage import run as triage
        from .evaluate import run as evaluate
        from .train import run as train

        out = self.run.out
        done: dict[str, str] = {}
        records: list[Path] = []  # the result files of this config's stages: all the report shows

        def stage(name: str, record: Path, produced_by, action) -> None:
            records.append(record)
            expected = produced_by()
            if record.exists():
                before, outputs = _recorded(record)
                if before is None or before.get("key") != expected["key"]:
                    stale = what_changed(before, expected)
                else:  # the same settings and inputs: reused only if its outputs are what it wrote
                    stale = outputs_changed(record, outputs)
                if stale is None:
                    done[name] = "skipped (up to date)"
                    print(f"[{name}] skipped: {record} was produced by the same settings and inputs", file=sys.stderr)
                    return
                print(f"[{name}] rerunning: {stale}", file=sys.stderr)
            else:
                print(f"[{name}] running", file=sys.stderr)
            action()
            done[name] = "ran"

        stage("triage", summary_path(self.triage.out), lambda: triage.produced_by(self.triage),
              lambda: triage.run(self.triage, progress))
        if self.needs_scores:
            stage("score", summary_path(self.score.out), lambda: score.produced_by(self.score),
                  lambda: score.run(self.score, progress))
        for m, cfg in self.train.items():
            stage(f"train:{m}", cfg.out / "train_summary.json", lambda cfg=cfg: train.produced_by(cfg),
                  lambda cfg=cfg: train.run(cfg, progress))
        for name, cfg in self.eval.items():
            stage(f"eval:{name}", cfg.out, lambda cfg=cfg: evaluate.produced_by(cfg),
                  lambda cfg=cfg: evaluate.run(cfg, progress))
        # written once every output beside it was produced by it
        write_yaml(out / "run_config.yaml", resolved(self.run))
        if self.run.report:
            build_report([out], out / "report.html", only=records)
            build_report([out], out / "report.md", only=records)
            done["report"] = str(out / "report.html")
        return done


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

