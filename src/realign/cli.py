"""The ``realign`` command: one subcommand per stage. Every stage reads and writes plain
files, resumes after interruption, shows progress and writes its resolved config beside its
outputs. Errors a user can cause print one line (``error: ...``), never a traceback."""

from __future__ import annotations

import errno as errno_names
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from .config import (EvalConfig, JudgeAuditConfig, JudgeConfig, ParamSpaceConfig, ScoreConfig, TrainConfig,
                     TriageConfig, default_cache_dir, load_yaml)
from .data import CONFLICT, write_pairs
from .errors import RealignError
from .files import check_output_paths, write_json
from .judges import VerdictCache, make_judge
from .judges.endpoints import endpoint_of
from .judges.registry import backend_names
from .policy import Policy, resolve_policy
from .reading import validate

#: ``--judge``'s help: the judge backends (:mod:`.judges.registry`) or a judge YAML file
JUDGE_HELP = f"Judge: {', '.join(backend_names('pointwise'))}, or a judge YAML file."

#: plain help (rich's boxed tables cut long option names at 80 columns) with every default shown
HELP = {"rich_markup_mode": None, "context_settings": {"show_default": True, "max_content_width": 100}}

app = typer.Typer(
    name="realign",
    help="Re-align a language model to a changed policy from its old preference data (TRACE).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    **HELP,
)


def _judge_section(judge: str | None, flag: str = "--judge") -> dict[str, Any]:
    """``--judge`` (or ``flag``) is a backend name (rules, openai, hf: :mod:`.judges.registry`) or a judge YAML file."""
    if judge is None:
        return {}
    if judge in backend_names("pointwise"):
        return {"backend": judge}
    if Path(judge).suffix in (".yaml", ".yml"):
        return load_yaml(judge)
    raise RealignError(f"{flag}: expected {', '.join(backend_names('pointwise'))} or a judge .yaml file, got {judge!r}")


def _oracle_section(oracle: str | None) -> dict[str, Any] | None:
    if oracle is None:
        return None
    if oracle in backend_names("oracle"):
        return {"backend": oracle}
    if Path(oracle).suffix in (".yaml", ".yml"):
        return load_yaml(oracle)
    raise RealignError(f"--oracle: expected {', '.join(backend_names('oracle'))} or an oracle .yaml file, got {oracle!r}")


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict):
            merged = _merge(out.get(key) if isinstance(out.get(key), dict) else {}, value)
            if merged:
                out[key] = merged
        else:
            out[key] = value
    return out


def _silence_libraries(quiet: bool) -> bool:
    """``-q`` also silences the progress bars of the libraries underneath: transformers' (weight
    loading) and datasets' ("Generating train split" when data is read through it)."""
    if quiet:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        if "datasets" in sys.modules:
            sys.modules["datasets"].disable_progress_bars()
        else:  # datasets reads its switch when first imported, which no command does before this
            os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    return quiet


QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars.", callback=_silence_libraries)


def _flag(model, field: str, *decls: str):
    """A flag whose help text and shown default come from the config model's field, so the
    flags, the YAML keys and docs/configuration.md share one description. The flag's own
    default is None: unset flags leave the YAML config's (or the model's) value in place."""
    info = model.model_fields[field]
    text = info.description or ""
    if not info.is_required():
        default = info.get_default(call_default_factory=True)
        if default not in (None, "", [], {}) and not hasattr(default, "model_fields"):
            text += f" [default: {default}]"
    return typer.Option(None, *decls, help=text, show_default=False)


@app.command()
def triage(
    data: Optional[str] = _flag(TriageConfig, 'data'),
    policy: Optional[str] = typer.Option(None, help="New policy: YAML file or packaged policy name."),
    judge: Optional[str] = typer.Option(None, help=JUDGE_HELP),
    out: Optional[Path] = _flag(TriageConfig, 'out'),
    config: Optional[Path] = typer.Option(None, help="Triage YAML config; flags override it."),
    model: Optional[str] = _flag(JudgeConfig, 'model'),
    base_url: Optional[str] = _flag(JudgeConfig, 'base_url'),
    concurrency: Optional[int] = _flag(JudgeConfig, 'concurrency'),
    on_unparseable: Optional[str] = _flag(JudgeConfig, 'on_unparseable'),
    split: Optional[str] = _flag(TriageConfig, 'split'),
    cache: Optional[Path] = _flag(TriageConfig, 'cache'),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Report and skip bad records."),
    invert_order: Optional[str] = _flag(TriageConfig, 'invert_order'),
    gold_out: Optional[Path] = _flag(TriageConfig, 'gold_out'),
    naive_out: Optional[Path] = _flag(TriageConfig, 'naive_out'),
    max_case_failure_rate: Optional[float] = _flag(TriageConfig, 'max_case_failure_rate'),
    review: Optional[int] = _flag(TriageConfig, 'review'),
    review_out: Optional[Path] = _flag(TriageConfig, 'review_out'),
    second_judge: Optional[str] = typer.Option(None, help=f"{TriageConfig.model_fields['second_judge'].description} "
                                               f"{', '.join(backend_names('pointwise'))}, or a judge YAML file."),
    labels: Optional[Path] = _flag(TriageConfig, 'labels'),
    oracle: Optional[str] = typer.Option(None, help=f"Oracle for PUNISH pairs: {', '.join(backend_names('oracle'))} or a YAML file."),
    oracle_model: Optional[str] = typer.Option(None, help="Oracle model name or path."),
    quiet: bool = QUIET,
) -> None:
    """Stage 1: judge both responses of every pair under the new policy; INVERT / PUNISH / RETAIN."""
    from .triage import run as stage

    base = load_yaml(config) if config else {}
    judge_cfg = _merge(
        _merge(base.get("judge", {}), _judge_section(judge)),
        {"model": model, "base_url": base_url, "concurrency": concurrency, "on_unparseable": on_unparseable},
    )
    oracle_cfg = _oracle_section(oracle)
    if oracle_cfg is not None or base.get("oracle"):
        oracle_cfg = _merge(_merge(base.get("oracle") or {}, oracle_cfg or {}), {"model": oracle_model})
    raw = _merge(
        base,
        {
            "data": data,
            "policy": str(resolve_policy(policy)) if policy else None,
            "out": out,
            "split": split,
            "cache": cache,
            "skip_invalid": skip_invalid or None,
            "invert_order": invert_order,
            "gold_out": gold_out,
            "naive_out": naive_out,
            "max_case_failure_rate": max_case_failure_rate,
            "review": review,
            "review_out": review_out,
            "labels": labels,
        },
    )
    raw["judge"] = judge_cfg
    if second_judge is not None:
        raw["second_judge"] = _merge(raw.get("second_judge") or {}, _judge_section(second_judge, "--second-judge"))
    if oracle_cfg is not None:
        raw["oracle"] = oracle_cfg
    if isinstance(raw.get("policy"), str):
        raw["policy"] = str(resolve_policy(raw["policy"]))
    cfg = validate(TriageConfig, raw, str(config) if config else "command line")
    summary = stage.run(cfg, progress=not quiet)
    c = summary["counts"]
    typer.echo(
        f"triaged {sum(c.values())} pairs: INVERT {c['INVERT']} · PUNISH {c['PUNISH']} · RETAIN {c['RETAIN']}"
        f" · dropped {summary['dropped']} · skipped {summary['skipped_invalid']}"
        + (f" · duplicates removed {summary['duplicates_removed']}" if summary["duplicates_removed"] else "")
        + f" | judged {summary['judged']} responses ({summary['judge_calls']} calls, {summary['cache_hits']} cache hits)"
        f" by {_judge_named(cfg.judge, summary['judge'])}" + _labels_and_review(summary) + f" -> {cfg.out}"
    )
    if "corrective" in summary:
        found = summary["corrective"]
        typer.echo(f"corrective responses: y_c for {found['pairs_with_y_c']} of {found['punish_pairs']} PUNISH pairs ("
                   + ", ".join(f"{name} {v['found']}/{v['prompts']} prompts" for name, v in found["sources"].items())
                   + ")")


def _judge_named(config: JudgeConfig, identity: str) -> str:
    """Which judge decided, as output names it: its identity (backend, model, prompt format;
    never a key), a hosted judge's endpoint (no credentials, no query) and, where the config
    names no judge backend, that the rules judge decided as the default."""
    named = f"judge {identity}"
    if config.backend == "openai":
        named += f" at {endpoint_of(config)}"
    if "backend" not in config.model_fields_set:
        named += " (the default: no judge configured)"
    return named


def _labels_and_review(summary: dict) -> str:
    """The summary line's words on the human labels applied and the review file written."""
    said = ""
    if "labels" in summary:
        lab = summary["labels"]
        said += (f" | labels: {lab['applied']} applied, {lab['verdicts_changed']} verdicts changed, "
                 f"{lab['pairs_recategorised']} pairs recategorised"
                 + (f", {lab['not_in_data']} not in the data" if lab["not_in_data"] else ""))
    if "review" in summary:
        said += f" | review: {summary['review']['written']} verdicts -> {summary['review']['path']}"
    return said


@app.command()
def score(
    model: Optional[str] = _flag(ScoreConfig, 'model'),
    data: Optional[str] = _flag(ScoreConfig, 'data'),
    invert_order: Optional[str] = _flag(ScoreConfig, 'invert_order'),
    out: Optional[Path] = _flag(ScoreConfig, 'out'),
    config: Optional[Path] = typer.Option(None, help="Score YAML config; flags override it."),
    adapter: Optional[str] = _flag(ScoreConfig, 'adapter'),
    gold_data: Optional[str] = _flag(ScoreConfig, 'gold_data'),
    gold_size: Optional[int] = _flag(ScoreConfig, 'gold_size'),
    variant: Optional[str] = _flag(ScoreConfig, 'variant'),
    hessian: Optional[str] = _flag(ScoreConfig, 'hessian'),
    hvp: Optional[str] = _flag(ScoreConfig, 'hvp'),
    damping: Optional[float] = _flag(ScoreConfig, 'damping'),
    normalise: Optional[str] = _flag(ScoreConfig, 'normalise'),
    method: Optional[str] = _flag(ScoreConfig, 'method'),
    exact: bool = typer.Option(False, "--exact", help="Per-sample autograd (same as --method exact)."),
    params: Optional[str] = _flag(ParamSpaceConfig, 'kind', "--params"),
    modules: Optional[list[str]] = _flag(ParamSpaceConfig, 'modules'),
    last_k_blocks: Optional[int] = _flag(ParamSpaceConfig, 'last_k_blocks'),
    batch_size: Optional[int] = _flag(ScoreConfig, 'batch_size'),
    max_length: Optional[int] = _flag(ScoreConfig, 'max_length'),
    device: Optional[str] = _flag(ScoreConfig, 'device'),
    seed: Optional[int] = _flag(ScoreConfig, 'seed'),
    quiet: bool = QUIET,
) -> None:
    """Stage 2: alignment impact score of every INVERT and PUNISH record (Alg. 1 lines 9-31)."""
    from .score import run as stage

    base = load_yaml(config) if config else {}
    raw = _merge(
        base,
        {
            "model": model, "data": data, "invert_order": invert_order, "out": out, "adapter": adapter,
            "gold_data": gold_data,
            "gold_size": gold_size, "variant": variant, "hessian": hessian, "hvp": hvp, "damping": damping,
            "normalise": normalise, "method": "exact" if exact else method, "batch_size": batch_size,
            "max_length": max_length, "device": device, "seed": seed,
            "params": {"kind": params, "modules": modules or None, "last_k_blocks": last_k_blocks},
        },
    )
    cfg = validate(ScoreConfig, raw, str(config) if config else "command line")
    summary = stage.run(cfg, progress=not quiet)
    if not summary:  # a non-main process under accelerate
        return
    if "weights" not in summary:
        typer.echo(f"no conflict records; wrote {cfg.out} unweighted")
        return
    w = summary["weights"]
    typer.echo(
        f"scored {summary['conflict']} conflict records ({summary['variant']['name']}, {cfg.hessian}, {cfg.method})"
        + "".join(f" | {c} mean weight {w[c].get('mean', 0):.3g}, zero {w[c].get('fraction_zero', 0):.0%},"
                  f" share {w[c].get('share', 0):.0%}" for c in CONFLICT)
        + f" -> {cfg.out}"
    )


@app.command("train")
def train_cmd(
    model: Optional[str] = _flag(TrainConfig, 'model'),
    data: Optional[str] = _flag(TrainConfig, 'data'),
    invert_order: Optional[str] = _flag(TrainConfig, 'invert_order'),
    out: Optional[Path] = _flag(TrainConfig, 'out'),
    method: Optional[str] = _flag(TrainConfig, 'method'),
    config: Optional[Path] = typer.Option(None, help="Train YAML config; flags override it."),
    adapter: Optional[str] = _flag(TrainConfig, 'adapter'),
    finetune: Optional[str] = _flag(TrainConfig, 'finetune'),
    preference_loss: Optional[str] = _flag(TrainConfig, 'preference_loss'),
    beta: Optional[float] = _flag(TrainConfig, 'beta'),
    alpha_kl: Optional[float] = _flag(TrainConfig, 'alpha_kl'),
    nll_weight: Optional[float] = _flag(TrainConfig, 'nll_weight'),
    rdpo_epsilon: Optional[float] = _flag(TrainConfig, 'rdpo_epsilon'),
    learning_rate: Optional[float] = _flag(TrainConfig, 'learning_rate'),
    epochs: Optional[float] = _flag(TrainConfig, 'epochs'),
    max_steps: Optional[int] = _flag(TrainConfig, 'max_steps'),
    batch_size: Optional[int] = _flag(TrainConfig, 'batch_size'),
    gradient_accumulation: Optional[int] = _flag(TrainConfig, 'gradient_accumulation'),
    gradient_checkpointing: Optional[bool] = _flag(
        TrainConfig, 'gradient_checkpointing', "--gradient-checkpointing/--no-gradient-checkpointing"),
    seed: Optional[int] = _flag(TrainConfig, 'seed'),
    device: Optional[str] = _flag(TrainConfig, 'device'),
    report_to: Optional[list[str]] = _flag(TrainConfig, 'report_to'),
    resume: Optional[bool] = _flag(TrainConfig, 'resume', "--resume/--no-resume"),
    quiet: bool = QUIET,
) -> None:
    """Stage 3: train with TRACE, an ablation or a baseline (Alg. 1 lines 34-46)."""
    from .train import run as stage

    base = load_yaml(config) if config else {}
    raw = _merge(
        base,
        {
            "model": model, "data": data, "invert_order": invert_order, "out": out, "method": method, "adapter": adapter, "finetune": finetune,
            "preference_loss": preference_loss, "beta": beta, "alpha_kl": alpha_kl, "nll_weight": nll_weight,
            "rdpo_epsilon": rdpo_epsilon, "learning_rate": learning_rate, "epochs": epochs, "max_steps": max_steps, "batch_size": batch_size,
            "gradient_accumulation": gradient_accumulation, "gradient_checkpointing": gradient_checkpointing,
            "seed": seed, "device": device,
            "report_to": report_to or None, "resume": resume,
        },
    )
    cfg = validate(TrainConfig, raw, str(config) if config else "command line")
    summary = stage.run(cfg, progress=not quiet)
    from accelerate import PartialState

    if not PartialState().is_main_process:  # under `accelerate launch`: one line, from the main process
        return
    typer.echo(
        f"trained {summary['method']['name']} for {summary['steps']} steps (loss {summary['train_loss']:.4g},"
        f" {summary['wall_s']:.0f} s{', resumed' if summary['resumed'] else ''}) -> {summary['saved']}"
    )


@app.command()
def merge(
    model: str = typer.Option(..., help="Base model: hub id or local path."),
    adapter: str = typer.Option(..., help="PEFT adapter directory."),
    out: Path = typer.Option(..., help="Where the merged model is saved (safetensors)."),
) -> None:
    """Fold a LoRA adapter into its base model."""
    from .train.merge import merge as merge_adapter

    typer.echo(f"merged -> {merge_adapter(model, adapter, out)}")


@app.command()
def methods() -> None:
    """List the registered training methods."""
    from .train.methods import METHODS

    for name, m in METHODS.items():
        typer.echo(f"{name:<18} {m.description}")


@app.command("eval")
def eval_cmd(
    model: Optional[str] = _flag(EvalConfig, 'model'),
    policy: Optional[str] = _flag(EvalConfig, 'policy'),
    prompts: Optional[str] = _flag(EvalConfig, 'prompts'),
    out: Optional[Path] = _flag(EvalConfig, 'out'),
    config: Optional[Path] = typer.Option(None, help="Eval YAML config; flags override it."),
    adapter: Optional[str] = _flag(EvalConfig, 'adapter'),
    judge: Optional[str] = typer.Option(None, help=JUDGE_HELP),
    judge_model: Optional[str] = _flag(JudgeConfig, 'model', "--judge-model"),
    base_url: Optional[str] = _flag(JudgeConfig, 'base_url'),
    attacks: Optional[str] = _flag(EvalConfig, 'attacks'),
    attack_templates: Optional[Path] = _flag(EvalConfig, 'attack_templates'),
    text: Optional[str] = _flag(EvalConfig, 'text'),
    reference: Optional[str] = _flag(EvalConfig, 'reference'),
    baseline: bool = typer.Option(False, "--baseline", help="Also evaluate the model without the adapter."),
    label: Optional[str] = _flag(EvalConfig, 'label'),
    max_new_tokens: Optional[int] = _flag(EvalConfig, 'max_new_tokens'),
    temperature: Optional[float] = _flag(EvalConfig, 'temperature'),
    seed: Optional[int] = _flag(EvalConfig, 'seed'),
    batch_size: Optional[int] = _flag(EvalConfig, 'batch_size'),
    device: Optional[str] = _flag(EvalConfig, 'device'),
    cache: Optional[Path] = _flag(EvalConfig, 'cache'),
    lm_eval: Optional[str] = typer.Option(None, help="Also run lm-evaluation-harness tasks, e.g. mmlu,gsm8k."),
    quiet: bool = QUIET,
) -> None:
    """Evaluate: target policy agreement per slice, attack success, utility (writes metrics.json)."""
    from .evaluate import run as stage

    base = load_yaml(config) if config else {}
    raw = _merge(
        base,
        {
            "model": model, "policy": str(resolve_policy(policy)) if policy else None, "prompts": prompts, "out": out,
            "adapter": adapter, "attacks": attacks, "attack_templates": attack_templates, "text": text,
            "reference": reference, "baseline": baseline or None, "label": label, "max_new_tokens": max_new_tokens,
            "temperature": temperature, "seed": seed, "batch_size": batch_size, "device": device, "cache": cache,
        },
    )
    raw["judge"] = _merge(_merge(base.get("judge", {}), _judge_section(judge)), {"model": judge_model, "base_url": base_url})
    if isinstance(raw.get("policy"), str):
        raw["policy"] = str(resolve_policy(raw["policy"]))
    cfg = validate(EvalConfig, raw, str(config) if config else "command line")
    metrics = stage.run(cfg, progress=not quiet)
    if not metrics:  # a non-main process of `accelerate launch -m realign eval`
        return
    if lm_eval:
        from .evaluate.utility import lm_eval_bridge

        metrics["utility"]["lm_eval"] = lm_eval_bridge(cfg.model, cfg.adapter, lm_eval.split(","))
        write_json(cfg.out, metrics)
    tpa = metrics.get("tpa", {})
    line = f"{metrics['label']}: "
    if tpa:
        o = tpa["overall"]
        line += f"TPA {o['rate']:.1%} [{o['ci95'][0]:.1%}, {o['ci95'][1]:.1%}] (n={o['n']})"
        if tpa.get("balanced") is not None:
            line += f", balanced (must-help, must-refuse) {tpa['balanced']:.1%}"
    acc = metrics["utility"]["benign_accuracy"]
    if acc:
        line += f", benign accuracy {acc['rate']:.1%}"
    unclassified = metrics.get("attacks_unclassified") or {}
    for name, r in metrics.get("attacks", {}).items():
        line += f", ASR[{name}] {r['rate']:.1%}"
        if (u := (unclassified.get(name) or {}).get("rate")):
            line += f" ({u:.1%} unclassified)"
    typer.echo(line + f" -> {cfg.out}")
    if isinstance(metrics.get("baseline"), dict):
        _echo_before_after({"before": metrics["baseline"], "after": metrics})


def _echo_before_after(columns: dict[str, dict]) -> None:
    """A table of the headline numbers of several evaluations (metrics.json contents), one
    column each: what ``realign run`` and ``realign eval --baseline`` end with."""
    from .metrics.stats import rate_of
    from .metrics.table import headlines

    rows = [(h.summary, lambda m, h=h: rate_of(h.read(m))) for h in headlines() if h.summary is not None]
    names = list(columns)
    width = max(12, *(len(n) + 2 for n in names))
    shown = [(label, get) for label, get in rows if any(get(m) is not None for m in columns.values())]
    if not shown:
        return
    typer.echo(f"\n{'':<42}" + "".join(f"{n:>{width}}" for n in names))
    for label, get in shown:
        cells = "".join(f"{v:>{width}.1%}" if (v := get(columns[n])) is not None else f"{'-':>{width}}" for n in names)
        typer.echo(f"{label:<42}{cells}")


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(
        ..., metavar="RUN_DIR", help="Run directories (or metrics.json files) to report on."
    ),
    out: Path = typer.Option(Path("report.html"), help="report.html (one self-contained file) or report.md."),
    old_policy: Optional[str] = typer.Option(
        None, help="The policy the model was aligned to (file or packaged name): the summary reads from the eval "
        "prompts' `expected` which slices the new policy changed (default: each run's run_config.yaml old_policy; "
        "without one, slices are ranked by change)."),
) -> None:
    """Tables and plots of one or more runs: a summary (did the slices the policy changed move, did anything else
    get worse, at what cost), TPA per slice, attack success, examples, impact weights, triage, losses."""
    from .report import build_report

    typer.echo(f"report -> {build_report(run_dirs, out, old_policy=old_policy)}")


@app.command()
def winrate(
    a: Path = typer.Option(..., "--a", help="Generations of model A (JSONL: id, prompt, response)."),
    b: Path = typer.Option(..., "--b", help="Generations of model B, matched to A by id."),
    policy: str = typer.Option(..., help="Policy: YAML file or packaged policy name."),
    judge: str = typer.Option("rules", help=JUDGE_HELP),
    out: Path = typer.Option(Path("winrate.json"), help="Result (JSON); per-item judgements go beside it."),
    model: Optional[str] = typer.Option(None, help="Judge model (openai model name or hf path/id)."),
    base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible endpoint URL."),
    concurrency: Optional[int] = typer.Option(None, help="Judge requests in flight."),
    label_a: Optional[str] = typer.Option(None, help="Name of model A in the result (default: file name)."),
    label_b: Optional[str] = typer.Option(None, help="Name of model B in the result (default: file name)."),
    quiet: bool = QUIET,
) -> None:
    """Win rate of A over B, judged against the policy, each pair asked in both orders."""
    from .evaluate.winrate import run_winrate

    judge_cfg = validate(
        JudgeConfig,
        _merge(_judge_section(judge), {"model": model, "base_url": base_url, "concurrency": concurrency}),
        "command line",
    )
    result = run_winrate(
        a, b, resolve_policy(policy), judge_cfg, out, label_a=label_a, label_b=label_b, progress=not quiet
    )
    s = result["summary"]
    ci = s["ci95"]
    typer.echo(
        f"{result['a']['label']} vs {result['b']['label']}: win rate {100 * s['win_rate']:.1f}% "
        f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] over {s['n']} items (wins {s['wins']} · ties {s['ties']} · "
        f"losses {s['losses']} · undecided {s['undecided']}) | {result['judge_calls']} judge calls -> {out}"
        if s["n"]
        else f"no decided items ({s['undecided']} undecided) -> {out}"
    )


@app.command("run")
def run_cmd(
    config: Path = typer.Argument(..., help="Run YAML: model, data, policy, judge, methods, eval.prompts, ..."),
    out: Optional[Path] = typer.Option(None, help="Run directory (overrides the config's out)."),
    quiet: bool = QUIET,
) -> None:
    """The whole pipeline: triage -> score -> train -> eval -> report (a stage whose output was produced by the same settings and inputs is skipped)."""
    from .pipeline import load
    from .stage import summary_path

    pipeline = load(config, {"out": out} if out else None)
    done = pipeline.execute(progress=not quiet)
    triaged = json.loads(summary_path(pipeline.triage.out).read_text(encoding="utf-8"))
    for stage, status in done.items():
        judged = f" · {_judge_named(pipeline.run.judge, triaged['judge'])}" if stage == "triage" else ""
        typer.echo(f"{stage:<24} {status}{judged}")
    columns = {}
    for name, cfg in pipeline.eval.items():
        try:
            columns[name] = json.loads(Path(cfg.out).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    _echo_before_after(columns)


policy_app = typer.Typer(help="Check a policy file.", no_args_is_help=True, **HELP)
app.add_typer(policy_app, name="policy")


@policy_app.command("test")
def policy_test(
    policy: str = typer.Argument(..., help="Policy: YAML file or packaged policy name."),
    judge: str = typer.Option("rules", help=JUDGE_HELP),
    model: Optional[str] = typer.Option(None, help="Judge model (openai model name or hf path/id)."),
    base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible endpoint URL."),
    cache: Optional[Path] = typer.Option(None, help="Verdict cache (SQLite); default <cache dir>/verdicts.sqlite."),
    max_failure_rate: float = typer.Option(0.0, min=0.0, max=1.0, help="Exit 1 when more than this share of cases fail."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the result as JSON here."),
) -> None:
    """Run the policy's test cases (`cases:`) through a judge: a confusion table, what the cases
    leave untested (rules policies) and every failure. Exit 1 when more than --max-failure-rate fail."""
    from .judges.cases import coverage_gaps, run_cases

    path = resolve_policy(policy)
    cache_path = cache or default_cache_dir() / "verdicts.sqlite"
    if json_out is not None:
        check_output_paths({"POLICY": path, "--cache": cache_path}, {"--json": json_out})
    loaded = Policy.load(path)
    if not loaded.cases:
        raise RealignError(f"{path}: policy {loaded.name!r} has no test cases (add a `cases:` list: README, 'Choosing and checking a judge')")
    judge_cfg = validate(JudgeConfig, _merge(_judge_section(judge), {"model": model, "base_url": base_url}), "command line")
    with VerdictCache(cache_path) as verdicts:
        result = run_cases(loaded, make_judge(judge_cfg), verdicts)
    gaps = coverage_gaps(loaded)
    typer.echo(f"{result.headline()} ({result.judge_calls} judge calls, {result.cache_hits} cache hits)")
    typer.echo(result.table())
    for gap in gaps:
        typer.echo(f"untested: {gap}")
    for failure in result.failures:
        typer.echo("FAILED " + failure.describe())
    if json_out is not None:
        write_json(json_out, {**result.to_dict(), "untested": gaps})
    if result.failure_rate > max_failure_rate:
        raise typer.Exit(1)


data_app = typer.Typer(help="Prepare preference data from public datasets.", no_args_is_help=True, **HELP)
app.add_typer(data_app, name="data")


@data_app.command("pku")
def data_pku(
    out: Path = typer.Option(..., help="Pairs (JSONL, TRL standard format)."),
    split: str = typer.Option("train", help="Dataset split."),
    source: Optional[str] = typer.Option(None, help="Local copy (folder, parquet, JSON/JSONL); default: the hub."),
) -> None:
    """PKU-SafeRLHF -> pairs, prepared as the reference code does (safer response chosen)."""
    from .pku import pku_pairs

    check_output_paths({"--source": source}, {"--out": out})
    pairs, counts = pku_pairs(source, split)
    write_pairs(out, pairs)
    typer.echo(
        f"{len(pairs)} pairs from {counts['rows']} rows (one safe {counts['one_safe']}, both safe {counts['both_safe']},"
        f" both unsafe {counts['both_unsafe']}, dropped without safer_response_id {counts['dropped_no_safer_id']}) -> {out}"
    )


judge_app = typer.Typer(help="Check a judge against people's verdicts before it triages anything.",
                        no_args_is_help=True, **HELP)
app.add_typer(judge_app, name="judge")


@judge_app.command("audit")
def judge_audit(
    labels: Path = typer.Option(..., help=JudgeAuditConfig.model_fields["labels"].description),
    policy: str = typer.Option(..., help="Policy: YAML file or packaged policy name."),
    judge: str = typer.Option("rules", help=JUDGE_HELP),
    out: Path = typer.Option(Path("judge-audit"), help=JudgeAuditConfig.model_fields["out"].description),
    model: Optional[str] = _flag(JudgeConfig, "model"),
    base_url: Optional[str] = _flag(JudgeConfig, "base_url"),
    concurrency: Optional[int] = _flag(JudgeConfig, "concurrency"),
    on_unparseable: Optional[str] = _flag(JudgeConfig, "on_unparseable"),
    cache: Optional[Path] = _flag(JudgeAuditConfig, "cache"),
    bins: Optional[int] = _flag(JudgeAuditConfig, "bins"),
    quiet: bool = QUIET,
) -> None:
    """Judge responses that people labelled and measure the judge: accuracy, Cohen's κ, confusion per
    prompt category, calibration of P(compliant), and how many labelled pairs change triage category."""
    from .judges.audit_run import run_audit

    judge_cfg = _merge(_judge_section(judge), {"model": model, "base_url": base_url, "concurrency": concurrency,
                                               "on_unparseable": on_unparseable})
    raw = _merge({}, {"labels": labels, "policy": str(resolve_policy(policy)), "out": out, "cache": cache, "bins": bins})
    cfg = validate(JudgeAuditConfig, {**raw, "judge": judge_cfg}, "command line")
    result = run_audit(cfg, progress=not quiet)
    o, tri, j = result["overall"], result["triage"], result["judging"]
    ci = o["error_rate"]["ci95"]
    kappa = "-" if o["kappa"] is None else f"{o['kappa']:.2f}"
    typer.echo(
        f"audited {o['n']} responses: accuracy {_pct(o['accuracy']['rate'])} · error rate {_pct(o['error_rate']['rate'])} "
        f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] · κ {kappa} · abstained {o['abstained']['k']}"
        + (f" | {tri['pairs']} pairs: triage changes for {_pct(tri['changed']['rate'])}" if tri else "")
        + f" | judged {j['judged']} ({j['judge_calls']} calls, {j['cache_hits']} cache hits) -> {cfg.out}"
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


from .synth.cli import synth_app  # noqa: E402  (a sub-app; imports nothing heavy)

app.add_typer(synth_app, name="synth")

models_app = typer.Typer(help="Small real models shipped in packages.", no_args_is_help=True, **HELP)
app.add_typer(models_app, name="models")


@models_app.command("prepare")
def models_prepare(
    name: str = typer.Argument(..., help="Packaged model name, e.g. smollm2."),
    cache_dir: Optional[Path] = typer.Option(
        None, help="realign's cache folder; the checkpoint goes to CACHE_DIR/models/NAME (default cache: "
        "$REALIGN_CACHE, else ~/.cache/realign)."),
    quiet: bool = QUIET,
) -> None:
    """Turn a packaged GGUF model into a trainable safetensors checkpoint (once, offline).
    Prints only the checkpoint's path on stdout, so ``BASE=$(realign models prepare NAME)``
    captures it."""
    from .modeling.packaged import prepare_packaged_model

    typer.echo(prepare_packaged_model(name, cache_dir, progress=not quiet))


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-output"), help="Where the demo writes its run directory."),
    quiet: bool = QUIET,
) -> None:
    """The whole pipeline on the synthetic world (contextual-exceptions shift) with the tiny
    bootstrapped old-policy model, then a before/after table."""
    from .demo import run_demo

    result = run_demo(out, progress=not quiet)
    rows = [
        ("new-policy agreement, all sensitive prompts", "agreement"),
        ("balanced agreement (must-help, must-refuse)", "balanced"),
        ("agreement on the slices the shift changed", "changed_slices"),
        ("agreement on the slices it left unchanged", "unchanged_slices"),
        ("harmful responses", "harmful"),
        ("degenerate responses", "degenerate"),
        ("benign accuracy", "benign_accuracy"),
    ]
    names = list(result["table"])
    typer.echo(f"\n{'':<46}" + "".join(f"{n:>10}" for n in names))
    for label, key in rows:
        cells = "".join(
            f"{result['table'][n][key]:>10.1%}" if result["table"][n][key] is not None else f"{'-':>10}" for n in names
        )
        typer.echo(f"{label:<46}{cells}")
    typer.echo(f"\nchanged slices: {', '.join(result['changed_slices'])}")
    typer.echo(f"report: {result['report']}")


INTERRUPTED = "interrupted — rerun the same command to resume"
#: errors of the machine, not of what the user gave: exit status 1 (user errors: 2)
_ENVIRONMENT_ERRNOS = {"ENOSPC", "EDQUOT", "EIO", "ENOMEM", "EMFILE", "ENFILE", "EFBIG", "EAGAIN", "EBUSY", "ETXTBSY"}


def _interrupted(exc: BaseException) -> bool:
    """Was ``exc`` caused by Ctrl-C? Typer turns KeyboardInterrupt into ``Exit(130)`` before
    this entry point sees it, so the chain is searched."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def os_error_line(exc: OSError) -> tuple[str, int]:
    """An OSError as one line naming the file and the cause, and the exit status: 1 for a fault
    of the machine (disk full, I/O error), 2 for a path the user gave (a directory, no
    permission, a missing folder)."""
    name = errno_names.errorcode.get(exc.errno or 0, "")
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    cause = exc.strerror or str(exc) or type(exc).__name__
    hint = " (free some space and rerun the same command to resume)" if name in ("ENOSPC", "EDQUOT") else ""
    return f"{where + ': ' if where else ''}{cause}{hint}", 1 if name in _ENVIRONMENT_ERRNOS else 2


def _leave_process_group(clean: bool) -> None:
    """Under ``accelerate launch``: tear the processes' ``torch.distributed`` group down before
    the interpreter exits -- after a barrier when the command ended normally, so that no
    process leaves while another still talks to it -- instead of leaving it to the interpreter's
    exit, where a gloo group can abort a process ("terminate called without an active
    exception"). After an error, no barrier: the other processes may never reach it."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return
    if clean:
        torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def main() -> None:
    """Console entry point (:func:`_main`), then the process group's teardown under
    ``accelerate launch`` (:func:`_leave_process_group`)."""
    status: Any = 1
    try:
        _main()
        status = 0
    except SystemExit as exc:
        status = exc.code
        raise
    finally:
        _leave_process_group(clean=status in (0, None))


def _main() -> None:
    """Run the command: user errors become one line on stderr and exit status 2; faults of
    the machine (disk full) one line and exit status 1; Ctrl-C one line and exit status 130."""
    try:
        app()
    except RealignError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    except SystemExit as exc:
        if exc.code == 130 and _interrupted(exc):
            print(INTERRUPTED, file=sys.stderr)
        raise
    except OSError as exc:
        line, status = os_error_line(exc)
        print(f"error: {line}", file=sys.stderr)
        sys.exit(status)
    except sqlite3.OperationalError as exc:  # a cache on a full disk ("database or disk is full")
        full = "full" in str(exc)
        print(f"error: cache database: {exc}" + (" (free some space and rerun the same command to resume)" if full else ""),
              file=sys.stderr)
        sys.exit(1 if full else 2)
