"""The commands that put a judge to work outside the pipeline: ``realign winrate`` (model A
against model B under a policy), ``realign policy test`` (a policy's test cases through a
judge) and ``realign judge audit`` (a judge against people's labels). Registered on the
``realign`` app by :mod:`realign.cli`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..config import JudgeAuditConfig, JudgeConfig, default_cache_dir
from ..errors import RealignError
from ..runs.files import check_output_paths, write_json
from ..judges import VerdictCache, make_judge
from ..policy import Policy, resolve_policy
from ..reading import validate
from .options import HELP, JUDGE_HELP, QUIET, _flag, _judge_section, _merge


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
    from ..evaluate.winrate import run_winrate

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


policy_app = typer.Typer(help="Check a policy file.", no_args_is_help=True, **HELP)


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
    from ..judges.cases import coverage_gaps, run_cases

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


judge_app = typer.Typer(help="Check a judge against people's verdicts before it triages anything.",
                        no_args_is_help=True, **HELP)


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
    from ..judges.audit_run import run_audit

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
