"""``realign run CONFIG.yaml``: triage → score → train → eval → report in one run directory.

A stage whose output exists is skipped; a stage that was interrupted resumes (verdict and
generation caches, partial scores, training checkpoints), so rerunning the same command after
a crash continues where it stopped. Layout::

    RUN/run_config.yaml             the resolved config
    RUN/triage/triaged.jsonl        (+ .summary.json)
    RUN/score/weighted.jsonl        (+ .summary.json)
    RUN/train/<method>/             adapter or model, train_summary.json
    RUN/eval/<method>/metrics.json  (+ generations.jsonl); eval/base for the starting model
    RUN/report.html, RUN/report.md

YAML: the shared keys (``model``, ``data``, ``policy``, ``judge``, ``seed``, ``device``) plus one
section per stage holding that stage's own options (see ``realign triage/score/train/eval``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import Field

from .config import (
    EvalConfig,
    ImpactConfig,
    JudgeConfig,
    StrictModel,
    TrainConfig,
    TriageConfig,
    resolved,
    validate,
)
from .errors import RealignError


class RunConfig(StrictModel):
    """The whole pipeline."""

    out: Path = Field(..., description="Run directory.")
    model: str = Field(..., description="The model to re-align (θ_ref).")
    data: str = Field(..., description="Old preference pairs.")
    policy: str = Field(..., description="The new policy (file or packaged name).")
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


def _needs_scores(methods: list[str]) -> bool:
    return any(m in ("trace", "trace-no-kl", "trace-no-triage") for m in methods)


class Pipeline:
    """Stage configs derived from one RunConfig; validated before anything runs."""

    def __init__(self, run: RunConfig, source: str) -> None:
        from .methods import get_method
        from .policy import resolve_policy

        self.run = run
        out = run.out
        policy = resolve_policy(run.policy)
        cache = run.cache_path()
        for m in run.methods:
            get_method(m)
        self.triage = validate(
            TriageConfig,
            {**run.triage, "data": run.data, "policy": policy, "judge": resolved(run.judge), "cache": cache,
             "out": out / "triage" / "triaged.jsonl", "gold_out": out / "triage" / "gold.jsonl",
             "naive_out": out / "triage" / "naive.jsonl"},
            f"{source}: triage",
        )
        self.score = validate(
            ImpactConfig,
            {"seed": run.seed, "device": run.device, **run.score, "model": run.model,
             "data": str(self.triage.out), "out": out / "score" / "weighted.jsonl"},
            f"{source}: score",
        )
        train_data = str(self.score.out if _needs_scores(run.methods) else self.triage.out)
        self.train = {
            m: validate(
                TrainConfig,
                {"seed": run.seed, "device": run.device, **run.train, "model": run.model, "data": train_data,
                 "method": m, "out": out / "train" / m},
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
            self.eval[name] = validate(
                EvalConfig,
                {"seed": run.seed, "device": run.device, **run.eval, "model": model, "adapter": adapter,
                 "reference": run.model if trained is not None and trained.finetune == "full" else None,
                 "label": name, "policy": policy, "judge": resolved(run.judge), "cache": cache,
                 "out": out / "eval" / name / "metrics.json"},
                f"{source}: eval",
            )

    def execute(self, progress: bool = True) -> dict:
        from . import impact, train, triage
        from .evaluate import run as evaluate
        from .files import write_yaml

        out = self.run.out
        out.mkdir(parents=True, exist_ok=True)
        write_yaml(out / "run_config.yaml", resolved(self.run))
        done: dict[str, str] = {}

        def stage(name: str, marker: Path, action) -> None:
            if marker.exists():
                done[name] = "skipped (output exists)"
                print(f"[{name}] skipped: {marker} exists", file=sys.stderr)
                return
            print(f"[{name}] running", file=sys.stderr)
            action()
            done[name] = "ran"

        stage("triage", triage.summary_path(self.triage.out), lambda: triage.run(self.triage, progress))
        if _needs_scores(self.run.methods):
            stage("score", impact.summary_path(self.score.out), lambda: impact.run(self.score, progress))
        for m, cfg in self.train.items():
            stage(f"train:{m}", cfg.out / "train_summary.json", lambda cfg=cfg: train.run(cfg, progress))
        for name, cfg in self.eval.items():
            stage(f"eval:{name}", cfg.out, lambda cfg=cfg: evaluate.run(cfg, progress))
        if self.run.report:
            from .report import build_report

            build_report([out], out / "report.html")
            build_report([out], out / "report.md")
            done["report"] = str(out / "report.html")
        return done


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> Pipeline:
    from .config import load_yaml

    raw = {**load_yaml(path), **(overrides or {})}
    return Pipeline(validate(RunConfig, raw, str(path)), str(path))

