"""``realign demo``: the whole pipeline on the synthetic world, contextual-exceptions shift,
with the tiny old-policy model — on a laptop CPU, in minutes — then a before/after table and
the report's path.

The old-policy model ships with the package (``resources/demo_model``: the bootstrap of world
seed 0 with the default :class:`~realign.synth.bootstrap.BootstrapConfig`, built once). Trained
here, it would differ from machine to machine in float rounding, and the demo's outcome moved
with it by up to 10 points; from the shipped weights every machine re-aligns the same model.
Should the world or the bootstrap recipe change, the shipped model no longer matches what
``realign synth bootstrap`` builds, and the demo bootstraps instead (saying so)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import RealignError
from ..runs.files import LOCK_NAME, check_output_paths, folder_lock, write_text
from ..runs.pipeline import Pipeline
from .bootstrap import BootstrapConfig, bootstrap, built_key
from .experiment import outcomes, prepare_data, run_config, shift_changes
from .world import World

#: The shift the demo re-aligns to and the methods it trains.
DEMO_SHIFT = "synth-contextual"
DEMO_METHODS = ["trace"]
#: The bootstrapped old-policy model of world seed 0, default config (see the module docstring).
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "resources" / "demo_model"
#: Written first into the demo's folder: the demo writes again only into a folder that is new,
#: empty or holds this file, never over a project of the user's (its data/*.jsonl).
DEMO_MARK = ".realign-demo"


def demo_model(progress: bool = True) -> Path:
    """The shipped old-policy model if it is what the bootstrap builds today (same world, recipe
    and config: :func:`~realign.synth.bootstrap.built_key`), else a bootstrapped one."""
    cfg = BootstrapConfig()
    if built_key(SHIPPED_MODEL) == cfg.key(World(cfg.world_seed)):
        return SHIPPED_MODEL
    print(f"note: the shipped demo model ({SHIPPED_MODEL}) was built from another world or bootstrap "
          "recipe; bootstrapping one (a few minutes)", file=sys.stderr)
    return bootstrap(cfg, progress=progress).path


def run_demo(out: Path, progress: bool = True) -> dict:
    """The demo in folder ``out`` (locked while it runs): its data, run and before/after table."""
    out = Path(out)
    check_output_paths({"the demo model": SHIPPED_MODEL}, {}, {"--out": out})
    with folder_lock(out):
        _claim(out)
        model = demo_model(progress)
        data = prepare_data(out / "data", seed=0, shifts=(DEMO_SHIFT,))
        run = run_config(out, data, str(model), DEMO_SHIFT, DEMO_METHODS)
        Pipeline(run, "demo").execute(progress=progress)
    table = outcomes(out, data, DEMO_SHIFT, ["base", *run.methods])
    return {"table": table, "changed_slices": sorted(shift_changes(data, DEMO_SHIFT)), "report": str(out / "report.html"), "model": str(model)}


def _claim(out: Path) -> None:
    """Make ``out`` the demo's folder (:data:`DEMO_MARK`), refusing one that holds anything the
    demo did not write: it would replace the data files there."""
    if (out / DEMO_MARK).exists():
        return
    others = sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME)
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise RealignError(f"--out {out} is not empty and was not made by `realign demo` (it holds {shown}): the demo "
                           "would replace its data files; give a new or empty folder")
    write_text(out / DEMO_MARK, "made by `realign demo`, which may write here again\n")
