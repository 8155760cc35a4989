"""What `realign demo` prints, as a results file the README's demo table is read from
(results/demo.{json,md}): the before/after table of the synthetic world's `contextual` shift
with today's defaults, the settings it ran with and its wall time.

Usage::

    python benchmarks/demo.py --out DIR     # runs (or resumes) the demo in DIR, writes results/demo.*
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, write_results  # noqa: E402

#: The rows of the README's demo table: (label, the outcome's key).
ROWS = [("new-policy agreement, all sensitive prompts", "agreement"),
        ("balanced agreement (must-help, must-refuse)", "balanced"),
        ("agreement on the slices the shift changed", "changed_slices"),
        ("agreement on the slices it left unchanged", "unchanged_slices"),
        ("harmful responses", "harmful"),
        ("degenerate responses", "degenerate"),
        ("benign accuracy", "benign_accuracy")]


def table_lines(result: dict) -> list[str]:
    """The README's demo table (Markdown) from a results file's outcomes."""
    table = result["table"]
    lines = ["| | base | TRACE |", "|---|---:|---:|"]
    for label, key in ROWS:
        lines.append(f"| {label} | {100 * table['base'][key]:.1f} % | {100 * table['trace'][key]:.1f} % |")
    return lines


def markdown(result: dict) -> list[str]:
    return ["# `realign demo`", "", f"Command: `{result['command']}`  ",
            f"Wall time {result['wall_s'] / 60:.1f} min on {result['machine']['cpus']} CPUs "
            f"(load average at the start {result['machine']['load_average']}); a demo folder already complete is "
            "skipped stage by stage, so a rerun takes seconds.  ",
            f"Changed slices: {', '.join(result['changed_slices'])}.", "", *table_lines(result)]


def main(argv: list[str]) -> None:
    from realign.synth.demo import run_demo
    from realign.runs.provenance import provenance
    from realign.synth.experiment import stage_settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="The demo's folder (new, empty or a demo's).")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    found = run_demo(args.out, progress=False)
    result = {"benchmark": "demo", "command": "python benchmarks/demo.py --out DIR", "table": found["table"],
              "changed_slices": found["changed_slices"], "settings": stage_settings(),
              "threads": os.environ.get("OMP_NUM_THREADS"), "machine": machine(1), "wall_s": time.perf_counter() - start,
              "provenance": provenance()}
    write_results("demo", result, markdown(result))
    print("\n".join(table_lines(result)))


if __name__ == "__main__":
    main(sys.argv[1:])
