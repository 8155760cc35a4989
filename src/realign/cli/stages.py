"""The stage commands -- ``realign triage``, ``score``, ``train``, ``eval``, ``report`` -- and
``realign run`` and ``realign demo``, which run them all: each lays its flags over its YAML
config, runs the stage and prints what it did in a line or a table. Registered on the
``realign`` app by :mod:`realign.cli`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..config import EvalConfig, JudgeConfig, ParamSpaceConfig, ScoreConfig, TrainConfig, TriageConfig, load_yaml
from ..data import CONFLICT
from ..runs.files import write_json
from ..judges.endpoints import endpoint_of
from ..judges.registry import backend_names
from ..policy import resolve_policy
from ..reading import validate
from .options import JUDGE_HELP, QUIET, _flag, _judge_section, _merge, _oracle_section


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
    from ..triage import run as stage

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
            "data": data, "policy": str(resolve_policy(policy)) if policy else None, "out": out, "split": split,
            "cache": cache, "skip_invalid": skip_invalid or None, "invert_order": invert_order, "gold_out": gold_out,
            "naive_out": naive_out, "max_case_failure_rate": max_case_failure_rate, "review": review,
            "review_out": review_out, "labels": labels,
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
    _echo_triaged(cfg, stage.run(cfg, progress=not quiet))


def _echo_triaged(cfg: TriageConfig, summary: dict) -> None:
    """What ``realign triage`` prints: the pairs per category, what was dropped and judged, by
    which judge, the labels applied and the review written; then, where corrective responses
    were looked for, how many PUNISH pairs got one."""
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
    from ..score import run as stage

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
    from ..train import run as stage

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
    from ..evaluate import run as stage

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
        from ..evaluate.utility import lm_eval_bridge

        metrics["utility"]["lm_eval"] = lm_eval_bridge(cfg.model, cfg.adapter, lm_eval.split(","))
        write_json(cfg.out, metrics)
    typer.echo(_metrics_line(metrics) + f" -> {cfg.out}")
    if isinstance(metrics.get("baseline"), dict):
        _echo_before_after({"before": metrics["baseline"], "after": metrics})


def _metrics_line(metrics: dict) -> str:
    """An evaluation's headline numbers (metrics.json contents) in one line, as ``realign eval``
    prints them: agreement with the target policy, benign accuracy, attack success."""
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
    return line


def _echo_before_after(columns: dict[str, dict]) -> None:
    """A table of the headline numbers of several evaluations (metrics.json contents), one
    column each: what ``realign run`` and ``realign eval --baseline`` end with."""
    from ..metrics.stats import rate_of
    from ..metrics.table import headlines

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
    from ..report import build_report

    typer.echo(f"report -> {build_report(run_dirs, out, old_policy=old_policy)}")


def run_cmd(
    config: Path = typer.Argument(..., help="Run YAML: model, data, policy, judge, methods, eval.prompts, ..."),
    out: Optional[Path] = typer.Option(None, help="Run directory (overrides the config's out)."),
    quiet: bool = QUIET,
) -> None:
    """The whole pipeline: triage -> score -> train -> eval -> report (a stage whose output was produced by the same settings and inputs is skipped)."""
    from ..runs.pipeline import load
    from ..runs.stage import summary_path

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


def demo(
    out: Path = typer.Option(Path("demo-output"), help="Where the demo writes its run directory."),
    quiet: bool = QUIET,
) -> None:
    """The whole pipeline on the synthetic world (contextual-exceptions shift) with the tiny
    bootstrapped old-policy model, then a before/after table."""
    from ..synth.demo import run_demo

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
