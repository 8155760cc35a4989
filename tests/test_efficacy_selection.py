"""The rule of benchmarks/efficacy.py that sets the defaults from the validation split."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from efficacy import (INCUMBENT_MARGIN_T, command_line, incumbent_variant, paired_gain, replicate_of,  # noqa: E402
                      select_variant, variant_settings)


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


def test_variants_measured_on_fewer_shifts_are_not_candidates():
    """A variant run on one shift of two, or on fewer worlds (a unit missing or not run), must not win
    on what it was measured on."""
    runs = {"a": {"s1": (0.8, {}), "s2": (0.8, {})}, "part": {"s1": (0.99, {})}}
    sel = select_variant(agg_of(runs), {"a": {}, "part": {"train": {"alpha_kl": 1.0}}})
    assert not sel["table"]["part"]["complete"] and not sel["table"]["part"]["candidate"]
    assert sel["selected"] == "a"
    fewer_worlds = agg_of({"a": {"s1": (0.8, {})}, "part": {"s1": (0.99, {})}})
    fewer_worlds["a"]["s1"]["1000"]["0.0"]["trace"]["agreement"]["n"] = 3
    assert select_variant(fewer_worlds, {"a": {}, "part": {"train": {"alpha_kl": 1.0}}})["selected"] == "a"


def test_a_challenger_replaces_todays_default_only_with_a_paired_gain_beyond_the_noise():
    """The best mean agreement wins only if it beats the incumbent (the variant run with today's
    defaults) by INCUMBENT_MARGIN_T standard errors of the paired (shift, world) differences."""
    variants = {"today": {}, "new": {"train": {"alpha_kl": 1.0}}}
    runs = {"today": {"s1": (0.80, {}), "s2": (0.80, {})}, "new": {"s1": (0.81, {}), "s2": (0.81, {})}}
    noisy = {"today": {"s1/0": 0.80, "s1/1": 0.90, "s2/0": 0.70, "s2/1": 0.80},
             "new": {"s1/0": 0.90, "s1/1": 0.85, "s2/0": 0.75, "s2/1": 0.74}}  # +0.01 on average, both ways
    sel = select_variant(agg_of(runs), variants, noisy, incumbent="today")
    assert sel["selected"] == "today" and sel["paired"]["t"] < INCUMBENT_MARGIN_T
    steady = {"today": noisy["today"], "new": {c: a + 0.01 + 0.001 * i for i, (c, a) in enumerate(noisy["today"].items())}}
    sel = select_variant(agg_of(runs), variants, steady, incumbent="today")
    assert sel["selected"] == "new" and sel["paired"]["t"] >= INCUMBENT_MARGIN_T
    assert select_variant(agg_of(runs), variants, noisy)["selected"] == "new"  # no incumbent ran: best agreement


def test_the_paired_gain_reads_the_cells_both_variants_ran():
    gain = paired_gain({"a/0": 0.9, "a/1": 0.8, "b/0": 0.5}, {"a/0": 0.7, "a/1": 0.7})
    assert gain["cells"] == 2 and gain["mean"] == pytest.approx(0.15) and gain["se"] == pytest.approx(0.05)
    assert gain["t"] == pytest.approx(3.0)
    assert paired_gain({"a/0": 0.9}, {"a/0": 0.7})["t"] is None
    assert paired_gain({"a/0": 0.9}, {"b/0": 0.7}) == {"cells": 0, "mean": None, "se": None, "t": None}


def test_the_incumbent_is_the_variant_that_spells_todays_defaults():
    from realign.config import CorrectiveConfig

    today = CorrectiveConfig.model_fields["temperature"].default
    variants = {"spelt": {"methods": ["trace"], "triage": {"corrective": {"temperature": today}}},
                "other": {"triage": {"corrective": {"temperature": today / 2}}}}
    assert incumbent_variant(variant_settings(variants)) == "spelt"
    assert incumbent_variant(variant_settings({"other": variants["other"]})) is None


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


def test_the_report_targets_apply_where_the_issue_says_and_are_met_or_not_from_the_means():
    from efficacy import targets

    def main(base, **methods):
        return {"1000": {"0.0": {"base": cell(base, unchanged=0.95),
                                 **{m: cell(a, unchanged=u) for m, (a, u) in methods.items()}}}}

    agg = {
        # base 0.70: every target applies; TRACE +20 points, changed 0.90, unchanged -3 points
        "low": main(0.70, trace=(0.90, 0.92), **{"naive-oracle-dpo": (0.80, 0.9), "dpo-gold": (0.91, 0.9),
                                                 "oracle-sft": (0.98, 0.98), "trace-no-impact": (0.85, 0.9)}),
        # base 0.90, naive 0.95: the +10 and the naive+5 targets do not apply; unchanged -8 points
        "high": main(0.90, trace=(0.93, 0.87), **{"naive-oracle-dpo": (0.95, 0.9), "dpo-gold": (0.96, 0.9),
                                                  "oracle-sft": (0.99, 0.99), "trace-no-impact": (0.94, 0.9)}),
    }
    low, high = targets(agg, [250, 1000])["low"], targets(agg, [250, 1000])["high"]
    assert low["gain_ge_10pts_where_base_le_85"]["met"] is True
    assert low["changed_slices_ge_80"]["met"] is True
    assert low["unchanged_within_5pts_of_base"]["value"] == pytest.approx(-0.03)
    assert low["ge_naive_plus_5_where_naive_lt_90"]["met"] is True
    assert low["ge_dpo_gold_minus_2"]["met"] is True
    assert low["gain_ge_90pct_of_oracle_sft"]["value"] == pytest.approx(0.2 / 0.28)
    assert low["gain_ge_90pct_of_oracle_sft"]["met"] is False
    assert low["ge_trace_no_impact"]["met"] is True
    assert high["gain_ge_10pts_where_base_le_85"]["met"] is None and "85" in high["gain_ge_10pts_where_base_le_85"]["why"]
    assert high["ge_naive_plus_5_where_naive_lt_90"]["met"] is None
    assert high["unchanged_within_5pts_of_base"]["met"] is False
    assert high["ge_dpo_gold_minus_2"]["met"] is False and high["ge_trace_no_impact"]["met"] is False


def test_recorded_command_leaves_out_the_note_and_quotes_paths():
    argv = ["--split", "report", "--note", "ran on 2 cores, code at abc", "--work", "/tmp/a b", "--note=x"]
    assert command_line(argv) == "python benchmarks/efficacy.py --split report --work '/tmp/a b'"


def test_units_keep_the_command_that_ran_them_and_an_aggregating_run_records_that_one(tmp_path, monkeypatch):
    import efficacy

    def worker(script, spec, threads):
        Path(spec["run_dir"]).mkdir(parents=True)
        return {"outcomes": {"base": {}, spec["method"]: {}}, "triage": {}, "weights": None, "wall_s": 1.0}

    monkeypatch.setattr(efficacy, "unit_key", lambda spec: "key")
    monkeypatch.setattr(efficacy, "run_worker", worker)
    grid = efficacy.cells("validation", {"default": {"methods": ["trace"]}})[:2]
    ran = "python benchmarks/efficacy.py --split validation --jobs 2"
    cells, missing = efficacy.run_grid(tmp_path, grid, tmp_path, 1, 1, "cpu", ran)
    assert not missing and efficacy.producing_commands(cells) == {ran: 2}
    aggregating = "python benchmarks/efficacy.py --split validation --aggregate-only"
    again, _ = efficacy.run_grid(tmp_path, grid, tmp_path, 1, 1, "cpu", aggregating, run_missing=False)
    assert efficacy.producing_commands(again) == {ran: 2}  # stored units keep the command that ran them
    lines = efficacy.command_lines({"unit_commands": {ran: 2}, "aggregated_by": aggregating})
    assert lines == [f"Units produced by `{ran}`: 2  ", f"Aggregated (no unit run) by `{aggregating}`  "]
    old = [{"commands": {"trace": None}}]  # a unit stored before units kept their command
    assert efficacy.producing_commands(old) == {efficacy.UNRECORDED: 1}


def test_results_record_every_stage_setting_each_variant_ran_with():
    from efficacy import variant_settings

    from realign.config import TrainConfig

    settings = variant_settings({"default": {}, "kl1": {"methods": ["trace"], "train": {"alpha_kl": 1.0}}})
    assert settings["default"]["train"]["alpha_kl"] == 0.3 and settings["kl1"]["train"]["alpha_kl"] == 1.0
    assert settings["default"]["train"]["precision"] == "fp32"  # the benchmark's own override
    assert settings["default"]["train"]["beta"] == TrainConfig.model_fields["beta"].default  # the library's default
    assert "out" not in settings["default"]["train"] and settings["default"]["score"]["variant"] == "cosine"


def test_rdpo_runs_in_the_noise_cells_assuming_the_cells_noise_rate(tmp_path, monkeypatch):
    import efficacy

    noisy = [c for c in efficacy.cells("report", {"default": {}}) if c["noise"] > 0]
    assert noisy and all(c["methods"] == ["trace", "rdpo"] for c in noisy)
    specs = []

    def worker(script, spec, threads):
        specs.append(spec)
        Path(spec["run_dir"]).mkdir(parents=True)
        return {"outcomes": {"base": {}, spec["method"]: {}}, "triage": {}, "weights": None, "wall_s": 1.0}

    monkeypatch.setattr(efficacy, "unit_key", lambda spec: "key")
    monkeypatch.setattr(efficacy, "run_worker", worker)
    efficacy.run_grid(tmp_path, noisy[:1], tmp_path, 1, 1, "cpu", "python benchmarks/efficacy.py")
    by_method = {s["method"]: s["overrides"] for s in specs}
    assert by_method == {"trace": {}, "rdpo": {"train": {"rdpo_epsilon": 0.2}}}  # TRACE's units keep their keys
    assert efficacy.method_overrides("rdpo", {"noise": 0.0}) == {}  # no noise: the library's default ε


def test_units_folder_keeps_finished_units_so_a_run_resumes_on_another_machine(tmp_path, monkeypatch):
    import efficacy

    runs = []

    def worker(script, spec, threads):
        runs.append(spec["method"])
        Path(spec["run_dir"]).mkdir(parents=True)
        return {"outcomes": {"base": {}, spec["method"]: {"agreement": 0.5}}, "triage": {}, "weights": None, "wall_s": 1.0}

    key = {"value": "key"}
    monkeypatch.setattr(efficacy, "unit_key", lambda spec: key["value"])
    monkeypatch.setattr(efficacy, "run_worker", worker)
    grid = efficacy.cells("validation", {"default": {"methods": ["trace"]}})[:2]
    units = tmp_path / "units"
    first, _ = efficacy.run_grid(tmp_path / "machine1", grid, tmp_path, 1, 1, "cpu", "ran", unit_copies=units)
    assert len(runs) == 2 and len(list(units.rglob("trace.json"))) == 2
    # another machine: an empty work folder, the committed copies: nothing runs again
    again, missing = efficacy.run_grid(tmp_path / "machine2", grid, tmp_path, 1, 1, "cpu", "ran", unit_copies=units)
    assert len(runs) == 2 and not missing and [c["outcomes"] for c in again] == [c["outcomes"] for c in first]
    key["value"] = "other settings"  # a copy made with other settings is not reused
    efficacy.run_grid(tmp_path / "machine3", grid, tmp_path, 1, 1, "cpu", "ran", unit_copies=units)
    assert len(runs) == 4


def test_a_units_key_is_its_resolved_settings_however_they_are_spelt(tmp_path):
    """A unit is keyed by every setting it runs with, resolved: spelling out a default is the same
    unit, a changed value (here or as a library default under the synthetic world's) is another."""
    import json

    import efficacy

    from realign.config import TrainConfig

    (tmp_path / "manifest.json").write_text(json.dumps({"world": {"version": "2", "hash": "h"}}))
    spec = {"variant": "v", "shift": "synth-contextual", "seed": 100, "size": 1000, "noise": 0.0, "oracle": False,
            "method": "trace", "device": "cpu", "data": str(tmp_path), "run_dir": "x", "threads": 1, "cache": "c"}
    default = TrainConfig.model_fields["retain_pref"].default
    key = efficacy.unit_key({**spec, "overrides": {}})
    assert efficacy.unit_key({**spec, "overrides": {"train": {"retain_pref": default}}}) == key
    assert efficacy.unit_key({**spec, "overrides": {"train": {"retain_pref": default + 0.5}}}) != key
    assert efficacy.unit_key({**spec, "overrides": {}, "run_dir": "elsewhere", "threads": 2}) == key


def test_a_budgeted_units_key_names_how_its_budget_is_set(tmp_path, monkeypatch):
    """A sampling baseline's judge budget is derived from TRACE's triage (its corrective search
    included): the rule is part of the unit's key, so a unit budgeted by an earlier rule is run
    again instead of reused; other units' keys do not carry it."""
    import json

    import efficacy

    (tmp_path / "manifest.json").write_text(json.dumps({"world": {"version": "2", "hash": "h"}}))
    spec = {"variant": "v", "shift": "synth-contextual", "seed": 100, "size": 1000, "noise": 0.0, "oracle": False,
            "device": "cpu", "data": str(tmp_path), "run_dir": "x", "threads": 1, "cache": "c", "overrides": {}}
    budgeted, plain = {**spec, "method": "online-dpo"}, {**spec, "method": "trace"}
    keys = {name: efficacy.unit_key(s) for name, s in (("budgeted", budgeted), ("plain", plain))}
    monkeypatch.setattr(efficacy, "BUDGET_RULE", "another rule")
    assert efficacy.unit_key(budgeted) != keys["budgeted"]
    assert efficacy.unit_key(plain) == keys["plain"]


def test_a_units_cost_adds_the_corrective_search_to_a_method_trained_on_the_triage():
    import efficacy

    from realign.metrics.costs import FROM_SAMPLES, FROM_TRIAGE

    corrective = {"sources": {"style-prefix": {"judged": 900, "generated_tokens": 100000},
                              "samples": {"judged": 10, "generated_tokens": 500}}}
    budget = {"judge_calls": 1917, "generated_tokens": 0, "training_tokens": 5, "wall_s": 2.0, "judge_calls_from": FROM_TRIAGE}
    cost = efficacy.unit_cost({"budget": budget, "corrective": corrective})
    assert cost["judge_calls"] == 1917 + 910 and cost["generated_tokens"] == 100500 and cost["training_tokens"] == 5
    own = {**budget, "judge_calls": 1500, "judge_calls_from": FROM_SAMPLES}  # a sampling baseline pays its own only
    assert efficacy.unit_cost({"budget": own, "corrective": corrective})["judge_calls"] == 1500
    assert efficacy.unit_cost({"budget": None}) is None
