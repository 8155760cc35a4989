"""Print the SmolLM2 example's results as markdown: new-policy agreement per slice, attack
success, benign accuracy and KL for the starting model and each method, plus the wall time of
every stage (from the files `build_pairs.py`, `realign train` and `realign run` wrote).

    python summarise.py [RUN_DIR]          # default runs/realign
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _pct(r: dict | None) -> str:
    if not r or r.get("rate") is None:
        return "–"
    return f"{100 * r['rate']:.0f} % ({r['k']}/{r['n']})"


def main() -> None:
    run = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "runs" / "realign"
    evals = {p.parent.name: _load(p) for p in sorted((run / "eval").glob("*/metrics.json"))}
    names = ["base"] + [n for n in evals if n != "base"]
    slices = sorted({s for m in evals.values() for s in m["tpa"]["by_slice"]})
    rows: list[tuple[str, list[str]]] = []
    for s in slices:
        rows.append((f"agreement, `{s}`", [_pct(evals[n]["tpa"]["by_slice"].get(s)) for n in names]))
    rows.append(("must-help (contextual-help + ordinary)", [_pct(evals[n]["tpa"].get("must_help")) for n in names]))
    rows.append(("must-refuse (harmbench + contextual-refuse)", [_pct(evals[n]["tpa"].get("must_refuse")) for n in names]))
    rows.append(("balanced agreement", [f"{100 * evals[n]['tpa']['balanced']:.1f}" for n in names]))
    rows.append(("overall agreement", [_pct(evals[n]["tpa"]["overall"]) for n in names]))
    for attack in evals["base"].get("attacks", {}):
        rows.append((f"attack success, `{attack}` (lower is better)", [_pct(evals[n]["attacks"][attack]) for n in names]))
    rows.append(("degenerate responses", [_pct(evals[n].get("degenerate_rate")) for n in names]))
    rows.append(("benign accuracy (qa)", [_pct(evals[n]["utility"]["benign_accuracy"]) for n in names]))
    rows.append(("mean token KL to the starting model",
                 [("–" if evals[n]["utility"]["kl_to_reference"] is None else f"{evals[n]['utility']['kl_to_reference']:.3f}")
                  for n in names]))
    print("| metric | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for label, cells in rows:
        print(f"| {label} | " + " | ".join(cells) + " |")

    print("\n| stage | wall time |\n|---|---:|")
    build = _load(HERE / "data" / "build_summary.json")
    if build:
        print(f"| build_pairs.py ({build['samples']} samples) | {build['wall_s']:.0f} s |")
    old = _load(HERE / "runs" / "old-policy" / "train_summary.json")
    if old:
        print(f"| align_old.yaml: DPO, {old['steps']} steps | {old['wall_s']:.0f} s |")
    triage = _load(run / "triage" / "triaged.summary.json")
    if triage:
        print(f"| triage ({sum(triage['counts'].values())} pairs: {triage['counts']}) | {triage['wall_s']:.1f} s |")
    score = _load(run / "score" / "weighted.summary.json")
    if score:
        print(f"| score ({score.get('conflict')} conflict records) | {score['wall_s']:.0f} s |")
    for p in sorted((run / "train").glob("*/train_summary.json")):
        t = _load(p)
        print(f"| train `{p.parent.name}` ({t['steps']} steps) | {t['wall_s']:.0f} s |")
    for n in names:
        print(f"| eval `{n}` | {evals[n]['wall_s']:.0f} s |")


if __name__ == "__main__":
    main()
