"""``realign synth``: export the synthetic world as ordinary files, bootstrap the tiny
old-policy model, add label noise to triaged data. Mounted by :mod:`realign.cli`; errors a
user can cause are :class:`~realign.errors.RealignError` (one line)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..config import load_yaml
from ..data import read_pairs, write_pairs
from ..errors import RealignError
from ..runs.files import check_output_paths
from ..reading import validate
from .bootstrap import BootstrapConfig, cache_path
from .bootstrap import bootstrap as run_bootstrap
from .export import SynthConfig, flip_noise, swap_noise
from .export import export as run_export
from .policies import SHIFTS

synth_app = typer.Typer(
    help="The synthetic policy-shift world: export its data, bootstrap its tiny old-policy model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _config(model, raw: dict, what: str):
    return validate(model, {k: v for k, v in raw.items() if v is not None}, what)


@synth_app.command()
def export(
    out: Path = typer.Option(..., help="Directory to write (created; files in it are replaced)."),
    seed: int = typer.Option(0, help="World seed: held-out templates and every sample."),
    n_pairs: Optional[int] = typer.Option(None, help="Old preference pairs [default: 1000]."),
    benign_fraction: Optional[float] = typer.Option(None, help="Share of benign pairs [default: 0.1]."),
    eval_per_slice: Optional[int] = typer.Option(None, help="Held-out eval prompts per slice [default: 16]."),
    noise: Optional[float] = typer.Option(None, help="Label-noise fraction [default: 0]."),
    noise_mode: Optional[str] = typer.Option(None, help="swap (chosen/rejected of old pairs) or flip (truth triage categories)."),
    shift: Optional[List[str]] = typer.Option(None, help="Shift policies (names or YAML files) [default: all synth shifts]."),
) -> None:
    """Write pairs.jsonl, eval_prompts.jsonl, benign.jsonl, policies/, truth/ and manifest.json."""
    cfg = _config(
        SynthConfig,
        {"seed": seed, "n_pairs": n_pairs, "benign_fraction": benign_fraction, "eval_per_slice": eval_per_slice,
         "noise": noise, "noise_mode": noise_mode},
        "command line",
    )
    manifest = run_export(out, cfg, shifts=tuple(shift) if shift else SHIFTS)
    c = manifest["counts"]
    typer.echo(
        f"wrote {c['pairs']} pairs ({c['benign_pairs']} benign), {c['eval_prompts']} eval prompts in "
        f"{c['slices']} slices, {c['benign_questions']} benign questions -> {out}"
    )
    for name, t in manifest["triage"].items():
        typer.echo(f"  {name:<28} INVERT {t['INVERT']:>5} · PUNISH {t['PUNISH']:>5} · RETAIN {t['RETAIN']:>5}")


@synth_app.command()
def bootstrap(
    seed: Optional[int] = typer.Option(None, help="World seed [default: 0]."),
    model_seed: Optional[int] = typer.Option(None, help="Initialisation and training seed [default: 0]."),
    config: Optional[Path] = typer.Option(None, help="Bootstrap YAML config (fields of BootstrapConfig); flags override it."),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache root [default: <realign cache>/synth]."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if cached."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train (or reuse) the tiny model that follows the old policy; prints its directory and metrics."""
    raw = {**(load_yaml(config) if config else {}), **{k: v for k, v in (("world_seed", seed), ("seed", model_seed)) if v is not None}}
    cfg = _config(BootstrapConfig, raw, str(config) if config else "command line")
    check_output_paths({"--config": config}, {}, {"the model folder": cache_path(cfg, cache_dir)})
    result = run_bootstrap(cfg, cache_dir=cache_dir, force=force, progress=not quiet)
    m = result.metrics
    state = "cached" if result.cached else f"built in {sum(m['timings'].values()):.0f} s"
    typer.echo(f"model ({m['parameters'] / 1e6:.2f}M parameters, {state}): {result.path}")
    for name, p in m["policies"].items():
        help_ = "-" if p["must_help"] is None else f"{p['must_help']:.2f}"
        typer.echo(f"  {name:<28} agreement {p['agreement']:.3f} · must-help {help_} · must-refuse {p['must_refuse']:.2f}")
    typer.echo(f"  benign accuracy {m['benign_accuracy']:.3f} · degenerate {m['degenerate_rate']:.3f} · harmful {m['harmful_rate']:.3f}")


@synth_app.command()
def noise(
    data: Path = typer.Option(..., "--in", help="Triaged records (JSONL) for flip; any pairs for swap."),
    out: Path = typer.Option(..., help="Output JSONL."),
    fraction: float = typer.Option(..., help="Share of records to corrupt (exactly round(fraction * n))."),
    mode: str = typer.Option("flip", help="flip: change triage categories; swap: swap chosen and rejected."),
    seed: int = typer.Option(0, help="Which records are picked."),
) -> None:
    """Add label noise to a file of pairs (swap) or triaged records (flip)."""
    check_output_paths({"--in": data}, {"--out": out})
    if mode not in ("flip", "swap"):
        raise RealignError(f"--mode: expected flip or swap, got {mode!r}")
    if not 0.0 <= fraction <= 1.0:
        raise RealignError(f"--fraction: expected a number between 0 and 1, got {fraction}")
    pairs = read_pairs(data, require_category=mode == "flip").pairs
    noisy, n = (flip_noise if mode == "flip" else swap_noise)(pairs, fraction, seed)
    write_pairs(out, noisy)
    typer.echo(json.dumps({"records": len(pairs), mode: n, "out": str(out)}))
