"""``realign report``: tables and embedded figures from fake run directories."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realign.cli import app
from realign.errors import RealignError
from realign.report import build_report, collect


def rate(r: float, n: int = 200) -> dict:
    k = round(r * n)
    return {"rate": k / n, "k": k, "n": n, "ci95": [max(0.0, k / n - 0.06), min(1.0, k / n + 0.06)]}


BASELINE = {
    "tpa": {"overall": rate(0.52), "by_slice": {"must_help": rate(0.085), "must_refuse": rate(0.93)},
            "must_help": rate(0.085), "must_refuse": rate(0.93), "balanced": 0.5075},
    "triage_slices": {"INVERT": rate(0.10, 40), "PUNISH": rate(0.55, 40), "RETAIN": rate(0.95, 40)},
    "attacks": {"control": rate(0.05, 60), "fictional_nesting": rate(0.40, 60), "refusal_suppression": rate(0.30, 60)},
    "utility": {"benign_accuracy": rate(0.81, 100), "perplexity": 12.25, "kl_to_reference": 0.0},
    "degenerate_rate": rate(0.0),
    "harmful_rate": rate(0.07),
}


def metrics(label: str, tpa: float, balanced: float, slices: tuple[float, float], asr: tuple[float, float]) -> dict:
    return {
        "stage": "eval",
        "label": label,
        "model": "tiny-base",
        "adapter": f"runs/{label}/adapter",
        "policy": {"name": "contextual-exceptions", "hash": "0123456789abcdef"},
        "judge": "rules/v1",
        "tpa": {
            "overall": rate(tpa),
            "by_slice": {"must_help": rate(slices[0]), "must_refuse": rate(slices[1])},
            "must_help": rate(slices[0]), "must_refuse": rate(slices[1]), "balanced": balanced,
        },
        "triage_slices": {"INVERT": rate(0.6, 40), "PUNISH": rate(0.75, 40), "RETAIN": rate(0.9, 40)},
        "attacks": {"control": rate(0.05, 60), "fictional_nesting": rate(asr[0], 60), "refusal_suppression": rate(asr[1], 60)},
        "utility": {"benign_accuracy": rate(0.79, 100), "perplexity": 12.75, "kl_to_reference": 0.0425},
        "degenerate_rate": rate(0.015),
        "harmful_rate": rate(0.04),
        "baseline": BASELINE,
    }


def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def triage_summary(counts: dict) -> dict:
    return {"stage": "triage", "pairs": sum(counts.values()), "counts": counts, "dropped": 0, "judge": "rules/v1"}


def score_summary() -> dict:
    edges = [0.0, 0.5, 1.0, 1.5, 2.0]
    return {
        "stage": "score",
        "records": 872,
        "conflict": 325,
        "weights": {
            "INVERT": {"n": 98, "mean": 0.25, "median": 0.0, "max": 2.0, "fraction_zero": 0.5},
            "PUNISH": {"n": 227, "mean": 1.25, "median": 1.0, "max": 2.0, "fraction_zero": 0.125},
        },
        "histogram": {
            "INVERT": {"edges": edges, "counts": [80, 10, 5, 3]},
            "PUNISH": {"edges": edges, "counts": [40, 90, 60, 37]},
        },
    }


def train_summary(method: str, scale: float) -> dict:
    history = [
        {"loss": scale * (1.0 - 0.05 * s), "L_I": scale * (0.4 - 0.01 * s), "L_II": scale * (0.3 - 0.01 * s),
         "L_KL": 0.01 * s / scale, "L_NLL": scale * (2.0 - 0.05 * s), "learning_rate": 1e-4, "epoch": s / 20, "step": 10 * s}
        for s in range(1, 16)
    ]
    history.append({"train_runtime": 60.0, "train_loss": 0.5, "step": 150})
    return {"stage": "train", "method": {"name": method, "description": "..."}, "steps": 150, "train_loss": 0.5,
            "log_history": history, "wall_s": 61.5}


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    """Two runs laid out as `realign run` might: stage files one or two levels down."""
    trace, dpo = tmp_path / "trace", tmp_path / "dpo-gold"
    write(trace / "eval" / "metrics.json", metrics("trace", 0.725, 0.7, (0.64, 0.81), (0.20, 0.10)))
    write(trace / "triage" / "triaged.summary.json", triage_summary({"INVERT": 98, "PUNISH": 227, "RETAIN": 547}))
    write(trace / "score" / "weighted.summary.json", score_summary())
    write(trace / "train" / "train_summary.json", train_summary("trace", 1.0))
    write(trace / "train" / "adapter" / "adapter_config.json", {"r": 32})  # ignored: not a result file
    write(trace / "eval" / "winrate_vs_u2a.json", {
        "stage": "winrate", "a": {"label": "trace"}, "b": {"label": "u2a"}, "judge": "rules/v1/pairwise-v1",
        "summary": {"n": 200, "wins": 150, "ties": 27, "losses": 23, "undecided": 0, "win_rate": 0.8175,
                    "ci95": [0.775, 0.86], "decisive": {"rate": 0.867, "k": 150, "n": 173, "ci95": [0.81, 0.91]},
                    "position": {"first_shown_wins": 0.5}},
    })
    write(dpo / "stages" / "eval" / "metrics.json", metrics("dpo-gold", 0.88, 0.875, (0.85, 0.90), (0.15, 0.05)))
    write(dpo / "stages" / "train" / "train_summary.json", train_summary("dpo_gold", 0.8))
    write(dpo / "too" / "deep" / "down" / "metrics.json", metrics("deep-hidden", 0.123, 0.1, (0.1, 0.1), (0.9, 0.9)))
    return [trace, dpo]


PNG_SRC = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def decode_png(data: bytes):
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_collect_finds_stage_files_up_to_two_levels(runs):
    found = collect(runs)
    assert [s.label for s in found.evals] == ["trace", "dpo-gold"]  # the 3-levels-deep file is not read
    assert len(found.triage) == 1 and len(found.score) == 1 and len(found.train) == 2
    assert [s.label for s in found.winrate] == ["trace vs u2a"]
    assert found.triage[0].label == "trace"
    assert {s.label for s in found.train} == {"trace", "dpo-gold"}


def test_html_report_numbers_and_embedded_figures(runs, tmp_path):
    out = build_report(runs, tmp_path / "report.html")
    page = out.read_text(encoding="utf-8")

    assert "judge: rules/v1 · generated" in page  # the header names the judge that decided (issue 27 item 15)
    # comparison table: TPA with its interval, balanced, pooled ASR, benign accuracy, degenerate rate
    assert "72.5% (66.5–78.5)" in page and "88.0%" in page
    assert "70.0%" in page and "87.5%" in page  # balanced
    assert "15.0%" in page  # trace: (12 + 6) / 120 pooled over the two jailbreak templates
    assert "10.0%" in page  # dpo-gold: (9 + 3) / 120
    assert "79.0%" in page and "1.5%" in page
    assert "tiny-base (before)" in page and "52.0%" in page and "8.5%" in page  # baseline row and slice
    assert "64.0%" in page and "81.0%" in page  # per-slice columns
    assert "INVERT success" in page and "60.0%" in page
    assert "deep-hidden" not in page  # the file three levels down is not part of the report
    # triage and impact tables
    assert ">98<" in page and ">227<" in page and ">547<" in page
    assert "50.0%" in page  # INVERT fraction of zero weights
    assert "trace vs u2a" in page and "81.8% (77.5–86.0)" in page and "150 / 27 / 23" in page

    images = PNG_SRC.findall(page)
    # the summary's forest plot, TPA by slice (with the triaged-prompt slices), attack success, impact histogram,
    # triage counts, losses
    assert len(images) == 6
    assert page.count("data:image/png;base64,") == 6
    for data in images:
        image = decode_png(base64.b64decode(data))
        assert image.format == "PNG"
        assert 400 <= image.width <= 2200 and 250 <= image.height <= 2000
    # self-contained: no external resources
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page)
    assert "<script" not in page


def test_markdown_report_writes_linked_pngs(runs, tmp_path):
    out = build_report(runs, tmp_path / "out" / "report.md")
    text = out.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert len(links) == 6
    for link in links:
        assert link.startswith("report_files/")
        image = decode_png((out.parent / link).read_bytes())
        assert image.width >= 400
    assert "| trace |" in text and "72.5% (66.5–78.5)" in text
    assert "| *tiny-base (before)* |" in text
    assert "data:image" not in text


def test_missing_pieces_are_noted(tmp_path):
    run = tmp_path / "only-eval"
    m = metrics("solo", 0.5, 0.5, (0.25, 0.75), (0.1, 0.1))
    del m["baseline"], m["attacks"], m["triage_slices"]
    write(run / "metrics.json", m)
    page = build_report([run / "metrics.json"], tmp_path / "r.html").read_text(encoding="utf-8")
    assert "No train_summary.json found" in page
    assert "triage counts omitted" in page
    assert "impact histogram omitted" in page
    assert "No attack results" in page
    assert "No base-model (before) evaluation among these runs" in page
    assert page.count("data:image/png;base64,") == 1  # TPA by slice only


def test_training_only_run_and_bad_files(tmp_path):
    run = tmp_path / "train-only"
    write(run / "train_summary.json", train_summary("trace", 1.0))
    (run / "metrics.json").write_text("{not json", encoding="utf-8")
    page = build_report([run], tmp_path / "r.html").read_text(encoding="utf-8")
    assert "not readable JSON" in page
    assert "No metrics.json found" in page
    assert page.count("data:image/png;base64,") == 1


def test_errors(tmp_path):
    with pytest.raises(RealignError, match="not found"):
        build_report([tmp_path / "nope"], tmp_path / "r.html")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RealignError, match="nothing to report"):
        build_report([tmp_path / "empty"], tmp_path / "r.html")
    with pytest.raises(RealignError, match=r"\.html or \.md"):
        build_report([tmp_path / "empty"], tmp_path / "r.pdf")


def test_cli_report(runs, tmp_path):
    out = tmp_path / "cli.html"
    result = CliRunner().invoke(app, ["report", *map(str, runs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and str(out) in result.output


def test_many_slices_become_a_dot_plot_and_a_transposed_table(tmp_path):
    m = metrics("wide", 0.5, 0.5, (0.5, 0.5), (0.1, 0.1))
    m["tpa"]["by_slice"] = {f"category{c}×context{x}": rate(0.05 * (c + x)) for c in range(6) for x in range(4)}
    write(tmp_path / "wide" / "metrics.json", m)
    page = build_report([tmp_path / "wide"], tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<th>Slice</th>" in page and "category5×context3" in page and "40.0%" in page
    images = PNG_SRC.findall(page)
    assert len(images) == 2  # TPA by slice (dot plot) and attack success
    tall = decode_png(base64.b64decode(images[0]))
    assert tall.height > tall.width  # slices as rows


def _pipeline_layout(tmp_path: Path, slice_name: str = "must_help", expected: bool = False) -> Path:
    """What ``realign run`` writes: eval/base (no adapter) and eval/<method> (an adapter on the
    same model), each with generations.jsonl beside metrics.json."""
    run = tmp_path / "run"
    for name, adapter, answer in (("base", None, "I can't help with that."), ("trace", "run/train/trace/adapter",
                                                                              "Here is an <b>overview</b> | of it.")):
        agreed = rate(1.0 if name == "trace" else 0.0, 3)
        tpa = {"overall": agreed, "by_slice": {slice_name: agreed}, "balanced": 0.5, "macro": 0.5}
        if expected:
            tpa.update(must_help=rate(0.2), must_refuse=rate(0.8))
        write(run / "eval" / name / "metrics.json", {
            "stage": "eval", "label": name, "model": "/cache/models/some-long-model-folder", "adapter": adapter,
            "tpa": tpa, "styles": {"refusal": 3, "helpful": 1}, "files": {"generations": "generations.jsonl"}})
        recs = [{"id": f"p{i}", "set": "policy", "prompt": f"Prompt {i} for my class", "slice": slice_name,
                 "response": answer, "compliant": name == "trace", "raw": "x style=refusal", "model_state": "after"}
                for i in range(3)]
        (run / "eval" / name / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return run


def test_the_base_model_run_is_the_before_row_and_balanced_and_slice_mean_have_their_own_columns(tmp_path):
    run = _pipeline_layout(tmp_path)  # metrics.json written when `balanced` also meant the slice mean
    text = build_report([run], tmp_path / "r.md").read_text()
    assert "| *base (before)* |" in text and "Rows marked (before) are the model before re-alignment" in text
    assert "No base-model" not in text and "/cache/models" not in text.split("## Sources")[0]
    header = next(line for line in text.splitlines() if line.startswith("| Run | TPA"))
    assert "Slice mean" in header and "Balanced" not in header  # no must-help/must-refuse: no balanced agreement
    run2 = _pipeline_layout(tmp_path / "b", expected=True)
    text2 = build_report([run2], tmp_path / "r2.md").read_text()
    header2 = next(line for line in text2.splitlines() if line.startswith("| Run | TPA"))
    assert "Slice mean" in header2 and "Balanced (help/refuse)" in header2
    assert "Balanced (help/refuse): the mean of the must-help and must-refuse rates" in text2


def test_example_responses_and_style_counts_are_shown_escaped(tmp_path):
    run = _pipeline_layout(tmp_path, slice_name="<script>alert(1)</script>")
    text = build_report([run], tmp_path / "r.md").read_text()
    responses = text.split("## Responses")[1].split("\n## ")[0]
    assert "| *base (before)* | 3 | 1 |" in responses  # style counts, one column per style
    assert "violates (refusal)" in responses and "complies (refusal)" in responses
    assert "<script>" not in text and "&lt;script&gt;" in text  # slice names are inert text
    assert "<b>" not in text and "\\| of it" in responses  # a response cannot break the table
    assert responses.count("### ") == 1 + 2  # the style table, then two of the slice's responses that flipped
    page = build_report([run], tmp_path / "r.html").read_text()
    assert "<script>alert" not in page and "Response styles" in page


def test_eval_out_may_be_a_folder_and_a_run_folder_is_not_an_adapter(tmp_path):
    from realign.config import EvalConfig
    from realign.modeling.sources import check_model_source

    cfg = EvalConfig(model="m", policy=tmp_path / "p.yaml", prompts="x.jsonl", out=tmp_path)
    assert cfg.out == tmp_path / "metrics.json"
    assert EvalConfig(model="m", policy="p", prompts="x", out=tmp_path / "new-folder").out.name == "metrics.json"
    assert EvalConfig(model="m", policy="p", prompts="x", out=tmp_path / "m.json").out.name == "m.json"
    (tmp_path / "run" / "adapter").mkdir(parents=True)
    (tmp_path / "run" / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(RealignError, match=r"training run's folder; its adapter is .*run/adapter"):
        check_model_source(str(tmp_path / "run"), "adapter")


def test_runs_judged_under_different_policies_are_reported_apart(tmp_path):
    """Issue 27.4: `realign report A B` where A and B were judged under different policies puts
    each policy's numbers in their own sections, and names the policy (name and hash) above
    every table of numbers and in the header; one policy is named too."""
    a, b = tmp_path / "a", tmp_path / "b"
    write(a / "eval" / "metrics.json", metrics("trace", 0.725, 0.7, (0.64, 0.81), (0.20, 0.10)))
    other = metrics("dpo-gold", 0.88, 0.875, (0.85, 0.90), (0.15, 0.05))
    other["policy"] = {"name": "safety-first", "hash": "fedcba9876543210"}
    write(b / "eval" / "metrics.json", other)
    first, second = "contextual-exceptions (0123456789abcdef)", "safety-first (fedcba9876543210)"
    out = build_report([a, b], tmp_path / "out" / "r.md")
    text = out.read_text(encoding="utf-8")
    assert f"2 policies, reported apart: {first}; {second}" in text.splitlines()[2]
    for policy, shown, hidden in ((first, "| trace |", "dpo-gold"), (second, "| dpo-gold |", "| trace |")):
        comparison = text.split(f"## Comparison · policy {policy}")[1].split("\n## ")[0]
        assert comparison.lstrip().startswith(f"### Policy: {policy}")
        assert shown in comparison and hidden not in comparison and "| *tiny-base (before)* |" in comparison
        slices = text.split(f"## Policy agreement by slice · policy {policy}")[1].split("\n## ")[0]
        assert f"### Policy: {policy}" in slices and shown in slices and hidden not in slices
    links = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert len(links) == len(set(links)) == 6  # the summary's, TPA by slice and attack success, once per policy
    page = build_report([a, b], tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.count(f"<h3>Policy: {first}</h3>") == page.count(f"<h3>Policy: {second}</h3>") == 4
    alone = build_report([a], tmp_path / "alone.md").read_text(encoding="utf-8")
    assert f"· policy {first} ·" in alone.splitlines()[2] and "## Comparison\n" in alone
    assert alone.count(f"### Policy: {first}") == 4  # summary, comparison, slices, attacks
    # the tables of other stages name the policy of each row
    write(a / "triage" / "triaged.summary.json",
          {**triage_summary({"INVERT": 1, "PUNISH": 2, "RETAIN": 3}), "policy": {"name": "safety-first", "hash": "fe"}})
    triage = build_report([a], tmp_path / "t.md").read_text(encoding="utf-8").split("## Triage")[1].split("\n## ")[0]
    assert "| Dropped | Policy | Judge |" in triage and "| safety-first (fe) |" in triage


# --------------------------------------------------------------------------- the summary (issue 33)

OLD, NEW = "safety-first", "contextual-exceptions"  # packaged policies: `old_policy` names one
#: slice -> (what the old and the new policy require, agreed before, agreed after) of 8 prompts each
CHANGE_SLICES = {
    "cyber/educational": (["refusal"], ["helpful"], 0, 8),
    "weapons/educational": (["refusal"], ["helpful"], 0, 6),
    "cyber/none": (["refusal"], ["refusal"], 8, 7),  # a drop within its interval
    "weapons/none": (["refusal"], ["refusal"], 8, 0),  # the regression: 8/8 -> 0/8, a slice the policy kept
}


def _change_layout(tmp_path: Path, after: dict | None = None, old_policy: str | None = OLD) -> Path:
    """What ``realign run`` writes for base and trace on prompts whose `expected` names the old
    and the new policy: metrics.json (tpa from realign.metrics.tpa.agreement), generations.jsonl,
    the eval prompts, and run_config.yaml with ``old_policy``. ``after``: slice -> agreed after."""
    from realign.metrics.tpa import agreement
    from realign.policy import Policy, resolve_policy

    run = tmp_path / "run"
    rows = [{"id": f"{name}-{i}", "prompt": f"{name} prompt {i}", "slice": name, "expected": {OLD: old, NEW: new}}
            for name, (old, new, _, _) in CHANGE_SLICES.items() for i in range(8)]
    (run / "data").mkdir(parents=True)
    (run / "data" / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    for name, adapter in (("base", None), ("trace", "run/train/trace/adapter")):
        agreed = {s: (v[2] if name == "base" else (after or {}).get(s, v[3])) for s, v in CHANGE_SLICES.items()}
        ok = [int(r["id"].rsplit("-", 1)[1]) < agreed[r["slice"]] for r in rows]
        policy = Policy.load(resolve_policy(NEW))
        write(run / "eval" / name / "metrics.json", {
            "stage": "eval", "label": name, "model": "tiny-base", "adapter": adapter,
            "policy": {"name": policy.name, "hash": policy.hash}, "judge": "rules/v3",
            "config": {"prompts": str(run / "data" / "eval.jsonl")}, "tpa": agreement(rows, ok, NEW),
            "utility": {"benign_accuracy": rate(0.8 if name == "base" else 0.75, 40),
                        "kl_to_reference": None if name == "base" else 0.125},
            "degenerate_rate": rate(0.0 if name == "base" else 0.03125, 32),
            "files": {"generations": "generations.jsonl"}})
        recs = [{"id": r["id"], "set": "policy", "prompt": r["prompt"], "slice": r["slice"],
                 "response": f"{name} says {'yes' if c else 'no'} to {r['id']}", "compliant": c,
                 "raw": f"{'compliant' if c else 'violating'}: style={'helpful' if c else 'refusal'} reason-{name}",
                 "model_state": "after"} for r, c in zip(rows, ok)]
        (run / "eval" / name / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    if old_policy is not None:
        (run / "run_config.yaml").write_text(f"out: {run}\nold_policy: {old_policy}\n", encoding="utf-8")
    return run


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}")[1].split("\n## ")[0]


def test_the_summary_says_how_the_changed_slices_moved_and_lists_the_regressions(tmp_path):
    """Issue 33 items 1-4: the first section answers, per run, how the slices the policy changed
    moved (before -> after with Wilson intervals), which slices got worse beyond their interval
    and the cost; which slices changed comes from the prompts' `expected` under the old policy
    of run_config.yaml; heat maps; the flips and regressions' responses, folded."""
    from realign.policy import Policy, resolve_policy

    run = _change_layout(tmp_path)
    text = build_report([run], tmp_path / "out" / "r.md").read_text(encoding="utf-8")
    old = Policy.load(resolve_policy(OLD))
    assert f"· old policy {OLD} ({old.hash}) · judge: rules/v3 ·" in text.splitlines()[2]
    assert text.split("\n## ")[1].startswith("Summary")  # the first section
    summary = _section(text, "Summary")
    # 14/16 pooled over the two changed slices; 7/16 over the two kept ones; weapons/none 8/8 -> 0/8
    assert ("trace: on the 2 slices the policy changed, agreement went from 0.0% (0.0–19.4) to 87.5% (64.0–96.5); "
            "on the 2 it left unchanged, from 100.0% (80.6–100.0) to 43.8% (23.1–66.8). "
            "Regressions (1): weapons/none (100.0% → 0.0%); the largest other drop, within its interval: "
            "cyber/none (100.0% → 87.5%). Cost: benign accuracy 80.0% → 75.0%, "
            "degenerate 0.0% → 3.1%, KL to the reference 0.1250.") in summary
    assert "| trace | 0.0% → 87.5% | 100.0% → 43.8% | 1: weapons/none | 80.0% → 75.0% | 0.0% → 3.1% | 0.1250 |" in summary
    changed = summary.split("### Slices the policy changed")[1].split("###")[0]
    assert "| all changed slices (pooled) | 0.0% (0.0–19.4) | 87.5% (64.0–96.5) |" in changed
    assert "| cyber/educational | 0.0% (0.0–32.4) | 100.0% (67.6–100.0) | +100.0 (+54.1 to +100.0) |" in changed
    assert "weapons/none" not in changed and "cyber/none" not in changed
    regressions = summary.split("### Regressions")[1]
    assert "| weapons/none | no | 100.0% (67.6–100.0) | 0.0% (0.0–32.4) | -100.0 (-100.0 to -54.1) |" in regressions
    assert "change\\_heat\\_map" not in summary and "r_files/change_heat_map_1.png" in summary  # heat maps
    responses = _section(text, "Responses")
    flips = responses.split("responses that flipped to compliant on the slices the policy changed (4 of 14 shown)")[1]
    flips = flips.split("</details>")[0]
    assert "| *base (before)* | base says no to cyber/educational-0 | violates (refusal) | violating: style=refusal reason-base |" in flips
    assert "| trace | trace says yes to cyber/educational-0 | complies (helpful) | compliant: style=helpful reason-trace |" in flips
    assert "cyber/none" not in flips and "weapons/none" not in flips
    worse = responses.split("responses behind the regressions, compliant before and not after (2 of 8 shown)")[1]
    assert "| trace | trace says no to weapons/none-0 | violates (refusal) |" in worse.split("</details>")[0]
    page = build_report([run], tmp_path / "r.html").read_text(encoding="utf-8")
    assert '<details class="examples"><summary>trace: responses behind the regressions' in page
    assert '<p class="lead">trace: on the 2 slices the policy changed' in page
    assert page.count("data:image/png;base64,") == 2  # heat maps (before, after, change) and TPA by slice


def test_without_an_old_policy_the_summary_says_so_and_ranks_slices_by_change(tmp_path):
    run = _change_layout(tmp_path, old_policy=None)
    summary = _section(build_report([run], tmp_path / "r.md").read_text(encoding="utf-8"), "Summary")
    assert "trace: which slices the policy changed is unknown, no old policy was named" in summary
    assert "| trace | unknown | — | 1: weapons/none |" in summary
    ranked = summary.split("### Slices that moved most")[1].split("###")[0]
    order = [line.split(" | ")[0].lstrip("| ") for line in ranked.splitlines() if line.startswith("| ") and "/" in line]
    assert order == ["cyber/educational", "weapons/none", "weapons/educational", "cyber/none"]  # by size of change
    # --old-policy names it for every run (one that is not a policy: a user error, before anything is read)
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path / "n.md"), "--old-policy", OLD])
    assert result.exit_code == 0, result.output
    assert "on the 2 slices the policy changed" in _section((tmp_path / "n.md").read_text(encoding="utf-8"), "Summary")
    with pytest.raises(RealignError, match="^nope: policy file not found"):
        build_report([run], tmp_path / "x.html", old_policy="nope")
    # prompts that state nothing under the old policy: said so
    other = build_report([run], tmp_path / "o.md", old_policy="paper-tiered").read_text(encoding="utf-8")
    assert "state no expected behaviour under paper-tiered" in _section(other, "Summary")


def test_no_regression_is_said_with_the_largest_drop_within_its_interval(tmp_path):
    run = _change_layout(tmp_path, after={"weapons/none": 5})  # 8/8 -> 5/8: within the intervals (n = 8)
    summary = _section(build_report([run], tmp_path / "r.md").read_text(encoding="utf-8"), "Summary")
    assert "Regressions: none; the largest drop, within its interval: weapons/none (100.0% → 62.5%). Cost:" in summary
    assert "| 0.0% → 87.5% | 100.0% → 75.0% | none |" in summary
    assert "Regressions: none. A regression is a slice whose change" in summary


def test_several_runs_share_one_summary_table_and_a_forest_plot(runs, tmp_path):
    """Issue 33 item 5: methods side by side get one run x {changed, unchanged, regressions,
    cost} table; slices not named category/context get the forest plot."""
    text = build_report(runs, tmp_path / "r.md").read_text(encoding="utf-8")
    summary = _section(text, "Summary")
    assert "| trace | unknown | — | 1: must\\_refuse | 81.0% → 79.0% | 0.0% → 1.5% | 0.0425 | 35.0% → 15.0% |" in summary
    assert "| dpo-gold | unknown | — | none | 81.0% → 79.0% | 0.0% → 1.5% | 0.0425 | 35.0% → 10.0% |" in summary
    assert "| trace | must\\_refuse | unknown | 93.0% (87.0–99.0) | 81.0% (75.0–87.0) | -12.0 (-20.5 to -3.5) |" in summary
    assert "r_files/change_forest.png" in summary and "change_heat_map" not in summary


def test_the_header_names_a_hosted_judge_s_endpoint_and_the_report_is_byte_stable(tmp_path, monkeypatch):
    import datetime as dt

    from realign.report import render

    run = _change_layout(tmp_path)
    metrics_path = run / "eval" / "trace" / "metrics.json"
    m = json.loads(metrics_path.read_text())
    m.update(judge="openai/gpt-4o/v2/endpoint-1a2b", judge_endpoint="https://judge.example/v1")
    metrics_path.write_text(json.dumps(m))

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.timezone.utc)

    monkeypatch.setattr(render._dt, "datetime", Frozen)
    first = build_report([run], tmp_path / "a.html").read_bytes()
    assert b"judge: openai/gpt-4o/v2/endpoint-1a2b at https://judge.example/v1, rules/v3 \xc2\xb7 generated 2026-01-02" in first
    assert build_report([run], tmp_path / "b.html").read_bytes() == first  # figures included
