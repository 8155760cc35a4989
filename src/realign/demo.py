"""``realign demo``: the whole pipeline on the synthetic world, contextual-exceptions shift,
with the bootstrapped tiny old-policy model — on a laptop CPU, in minutes — then a
before/after table and the report's path."""

from __future__ import annotations

from pathlib import Path

#: The shift the demo re-aligns to and the methods it trains.
DEMO_SHIFT = "synth-contextual"
DEMO_METHODS = ["trace"]


def run_demo(out: Path, progress: bool = True) -> dict:
    from .pipeline import Pipeline
    from .synth.bootstrap import bootstrap
    from .synth.experiment import outcomes, prepare_data, run_config, shift_changes

    boot = bootstrap(progress=progress)
    data = prepare_data(out / "data", seed=0, shifts=(DEMO_SHIFT,))
    run = run_config(out, data, str(boot.path), DEMO_SHIFT, DEMO_METHODS)
    Pipeline(run, "demo").execute(progress=progress)
    table = outcomes(out, data, DEMO_SHIFT, ["base", *run.methods])
    return {"table": table, "changed_slices": sorted(shift_changes(data, DEMO_SHIFT)), "report": str(out / "report.html"), "model": str(boot.path)}
