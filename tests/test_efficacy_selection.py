"""The rule of benchmarks/efficacy.py that sets the defaults from the validation split."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from efficacy import replicate_of, select_variant  # noqa: E402


def cell(agreement, benign=0.9, degenerate=0.0, unchanged=0.95):
    stats = {"agreement": agreement, "balanced": agreement, "changed_slices": agreement, "benign_accuracy": benign,
             "degenerate": degenerate, "unchanged_slices": unchanged}
    return {k: {"mean": v, "sd": 0.0, "n": 1} for k, v in stats.items()}


def agg_of(runs):
    """{variant: {shift: TRACE agreement}} -> the aggregate layout (base: 0.5, benign 0.9)."""
    return {v: {s: {"1000": {"0.0": {"base": cell(0.5), "trace": cell(a, **kw)}}} for s, (a, kw) in shifts.items()}
            for v, shifts in runs.items()}


def test_replicates_differ_only_in_the_training_seed():
    assert replicate_of({"methods": ["trace"], "train": {"max_steps": 300, "seed": 1}}) == \
        replicate_of({"train": {"max_steps": 300}})
    assert replicate_of({"train": {"seed": 1}}) == replicate_of({}) != replicate_of({"train": {"max_steps": 300}})


def test_the_rule_averages_replicates_and_skips_ineligible_variants():
    variants = {"a": {}, "a-seed1": {"train": {"seed": 1}}, "b": {"train": {"max_steps": 300}},
                "c": {"train": {"alpha_kl": 1.0}}, "d": {"train": {"retain_pref": 1.0}}}
    runs = {
        "a": {"s1": (0.9, {}), "s2": (0.9, {})},
        "a-seed1": {"s1": (0.7, {}), "s2": (0.7, {})},  # a's mean: 0.8
        "b": {"s1": (0.85, {}), "s2": (0.85, {})},
        "c": {"s1": (0.99, {"benign": 0.5}), "s2": (0.99, {})},  # benign accuracy falls: not eligible
        "d": {"s1": (0.98, {"unchanged": 0.80}), "s2": (0.98, {})},  # s1's unchanged slices 15 points down: not eligible
    }
    sel = select_variant(agg_of(runs), variants)
    assert set(sel["table"]) == {"a", "b", "c", "d"}
    assert sel["table"]["d"]["unchanged_delta"] == pytest.approx(-0.15) and sel["table"]["d"]["eligible"] is False
    assert sel["table"]["a"]["replicates"] == ["a", "a-seed1"]
    assert sel["table"]["a"]["agreement"] == pytest.approx(0.8)
    assert not sel["table"]["c"]["eligible"]
    assert sel["selected"] == "b" and sel["overrides"] == {"train": {"max_steps": 300}}


def test_variants_that_need_an_oracle_are_not_candidates():
    variants = {"a": {}, "o": {"oracle": True}, "o-seed1": {"oracle": True, "train": {"seed": 1}}}
    runs = {"a": {"s1": (0.8, {})}, "o": {"s1": (0.95, {})}, "o-seed1": {"s1": (0.9, {})}}
    sel = select_variant(agg_of(runs), variants)
    assert sel["table"]["o"]["replicates"] == ["o", "o-seed1"] and not sel["table"]["o"]["candidate"]
    assert sel["selected"] == "a"


def test_the_ceiling_split_runs_oracle_sft_alone_and_checks_the_gate_per_world_seed():
    from efficacy import CEILING_GATE, MAIN_METHODS, ORACLE_METHODS, ceiling_check, ceiling_lines, cells

    grid = cells("ceiling", {"default": {}})
    assert {c["methods"][0] for c in grid} == {"oracle-sft"} and len(grid) == 4 * 3
    assert {c["seed"] for c in grid} == {100, 101, 102}  # validation world seeds, never the report's
    assert "oracle-sft" in MAIN_METHODS and "oracle-sft" in ORACLE_METHODS  # sees y_c, in the main grid

    def row(agreement, changed, unchanged, benign):
        return {"agreement": agreement, "changed_slices": changed, "unchanged_slices": unchanged,
                "benign_accuracy": benign, "degenerate": 0.0, "balanced": None, "must_help": None,
                "must_refuse": None, "harmful": 0.0}

    base = row(0.75, 0.0, 1.0, 1.0)
    results = [{"shift": "synth-contextual", "seed": 100, "outcomes": {"base": base, "oracle-sft": row(0.99, 1.0, 0.99, 0.99)}},
               {"shift": "synth-contextual", "seed": 101, "outcomes": {"base": base, "oracle-sft": row(0.96, 0.85, 0.99, 1.0)}},
               {"shift": "synth-stricter", "seed": 100, "outcomes": {"base": base, "oracle-sft": row(0.99, 1.0, 0.99, 0.97)}}]
    check = ceiling_check(results)
    assert [r["met"] for r in check["rows"]] == [True, False, False] and not check["met"]
    assert not check["rows"][1]["checks"]["changed_slices"] and not check["rows"][2]["checks"]["benign"]
    assert CEILING_GATE["agreement"] == 0.95
    assert any("no: changed_slices" in line for line in ceiling_lines(check))
    assert ceiling_check(results[:1])["met"]
