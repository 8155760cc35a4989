"""Data from the synthetic world: old pairs, eval sets, ground-truth triage per shift, label
noise, the export files and the `realign synth` commands."""

import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from realign.data import read_pairs
from realign.errors import RealignError
from realign.synth import (
    OLD,
    POLICY_NAMES,
    SHIFTS,
    SynthConfig,
    World,
    eval_prompts,
    export,
    flip_noise,
    make_pairs,
    swap_noise,
    triage_counts,
    truth_triage,
)
from realign.synth.cli import synth_app
from realign.synth.judge import TruthJudge

SMALL = SynthConfig(seed=0, n_pairs=300, eval_per_slice=3)


@pytest.fixture(scope="module")
def pairs():
    return make_pairs(World(0), 600)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "a"
    return out, export(out, SMALL)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(exported, tmp_path):
    out, _ = exported
    export(tmp_path / "b", SMALL)
    a, b = _files(out), _files(tmp_path / "b")
    assert set(a) == set(b) and a == b
    assert {"pairs.jsonl", "eval_prompts.jsonl", "benign.jsonl", "manifest.json", "policies/synth_old.yaml"} <= set(a)
    assert {f"truth/{s}.jsonl" for s in SHIFTS} <= set(a)


def test_a_different_seed_gives_different_data(exported, tmp_path):
    out, _ = exported
    export(tmp_path / "c", SMALL.model_copy(update={"seed": 1}))
    a, c = _files(out), _files(tmp_path / "c")
    for name in ("pairs.jsonl", "eval_prompts.jsonl", "benign.jsonl"):
        assert a[name] != c[name], name
    assert a["policies/synth_old.yaml"] == c["policies/synth_old.yaml"]


def test_manifest_lists_every_file_with_its_hash(exported):
    import hashlib

    out, manifest = exported
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["seed"] == 0 and manifest["world"]["hash"] == World(0).hash
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
    assert manifest["counts"]["pairs"] == 300 and manifest["counts"]["eval_prompts"] == 3 * manifest["counts"]["slices"]


def test_pairs_are_ordinary_trl_records_with_tags(exported):
    out, _ = exported
    pairs = read_pairs(out / "pairs.jsonl").pairs
    assert len(pairs) == 300
    raw = json.loads((out / "pairs.jsonl").read_text().splitlines()[0])
    assert {"prompt", "chosen", "rejected"} <= set(raw) and isinstance(raw["prompt"], str)
    for p in pairs:
        assert {"kind", "category", "context", "chosen_style", "rejected_style"} <= set(p.meta)
        if p.meta["kind"] == "sensitive":
            assert {"topic", "slice", "template"} <= set(p.meta) and p.meta["split"] == "train"
    assert Counter(p.meta["kind"] for p in pairs) == {"sensitive": 270, "benign": 30}


def test_old_pairs_are_labelled_under_the_old_policy(pairs):
    old = TruthJudge(OLD)
    for p in pairs:
        assert old.judge(p.prompt, p.chosen).compliant, p
        both_answers = {p.meta["chosen_style"], p.meta["rejected_style"]} <= {"helpful", "referral", "correct", "wrong"}
        if p.meta["kind"] == "sensitive" and not both_answers:
            assert not old.judge(p.prompt, p.rejected).compliant, p
        if p.meta["kind"] == "sensitive":
            assert old.style(p.chosen) == p.meta["chosen_style"]
            assert old.style(p.rejected) == p.meta["rejected_style"]


def test_eval_prompts_are_held_out_and_tagged(pairs):
    w = World(0)
    rows = eval_prompts(w, 4)
    train_prompts = {p.prompt for p in pairs}
    assert not train_prompts & {r["prompt"] for r in rows}
    assert Counter(r["slice"] for r in rows) == {f"{c}/{x}": 4 for c, x in w.slices()}
    for r in rows:
        assert int(r["template"].split("-")[1]) in w.request_split["heldout"]
        j = TruthJudge(OLD).judge(r["prompt"], "")
        assert (j.category, j.context) == (r["category"], r["context"])
        assert set(r["expected"]) == set(POLICY_NAMES)  # every named policy, the validation-only shift too
    must_help = {r["slice"] for r in rows if "refusal" not in r["expected"]["synth-contextual"]}
    assert must_help == {"cyber/educational", "cyber/research", "weapons/educational", "weapons/research",
                         "selfharm/educational", "selfharm/therapeutic", "drugs/educational", "drugs/therapeutic",
                         "medical/none", "medical/educational", "medical/therapeutic", "medical/research"}


def test_triage_under_every_shift_yields_all_three_categories(pairs, exported):
    for shift in SHIFTS:
        counts = triage_counts(pairs, shift)
        assert sum(counts.values()) == len(pairs)
        assert all(counts[c] > 0 for c in ("INVERT", "PUNISH", "RETAIN")), (shift, counts)
    _, manifest = exported
    for shift in SHIFTS:
        assert all(v > 0 for v in manifest["triage"][shift].values()), manifest["triage"]


def test_truth_triage_follows_the_storage_convention_and_oracles_comply(pairs):
    w = World(0)
    judge = TruthJudge("synth-contextual")
    records = truth_triage(pairs, "synth-contextual", w)
    by_id = {p.id: p for p in pairs}
    for r in records:
        old = by_id[r.id]
        assert r.swapped == (r.category == "INVERT")
        assert (r.chosen, r.rejected) == ((old.rejected, old.chosen) if r.swapped else (old.chosen, old.rejected))
        assert r.verdicts["chosen"]["compliant"] == judge.judge(r.prompt, r.chosen).compliant
        if r.category == "PUNISH" and r.meta["kind"] == "sensitive":
            assert r.oracle is not None and judge.judge(r.prompt, r.oracle).compliant
        else:
            assert r.oracle is None
    # the triage module's own storage agrees (same decision table)
    from realign.data.triaged import categorise

    for r in records:
        c_w = r.verdicts["rejected" if r.swapped else "chosen"]["compliant"]
        c_l = r.verdicts["chosen" if r.swapped else "rejected"]["compliant"]
        assert categorise(c_w, c_l) == r.category


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 1.0])
def test_swap_noise_swaps_exactly_the_requested_fraction(pairs, fraction):
    noisy, n = swap_noise(pairs, fraction, seed=3)
    assert n == round(len(pairs) * fraction)
    swapped = [a for a, b in zip(noisy, pairs) if (a.chosen, a.rejected) == (b.rejected, b.chosen)]
    assert len(swapped) == n == sum(a.meta.get("noise") == "swapped" for a in noisy)
    assert noisy == swap_noise(pairs, fraction, seed=3)[0]


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5])
def test_flip_noise_changes_exactly_the_requested_fraction(pairs, fraction):
    truth = truth_triage(pairs, "synth-contextual")
    noisy, n = flip_noise(truth, fraction, seed=1)
    assert n == round(len(truth) * fraction)
    changed = [(t, x) for t, x in zip(truth, noisy) if t.category != x.category]
    assert len(changed) == n
    for t, x in changed:
        assert x.meta["true_category"] == t.category
        assert x.swapped == (x.category == "INVERT")
        # the pair underneath is the same old pair, stored by the new category's convention
        old = (t.rejected, t.chosen) if t.swapped else (t.chosen, t.rejected)
        assert (x.rejected, x.chosen) if x.swapped else (x.chosen, x.rejected) == old
        assert x.verdicts["chosen"] == (t.verdicts["chosen"] if x.swapped == t.swapped else t.verdicts["rejected"])
    with pytest.raises(RealignError):
        flip_noise(pairs, 0.1)  # untriaged pairs cannot be flipped


def test_export_with_flip_noise_records_it(tmp_path):
    manifest = export(tmp_path, SMALL.model_copy(update={"noise": 0.2, "noise_mode": "flip"}))
    assert manifest["noise"] == {"fraction": 0.2, "mode": "flip", "records": 60}
    records = read_pairs(tmp_path / "truth" / "synth-contextual.jsonl").pairs
    assert sum(r.meta.get("noise") == "flipped" for r in records) == 60


def test_a_user_shift_file_is_exported_and_triaged(tmp_path):
    import yaml

    from realign.synth import policy_path

    raw = yaml.safe_load(policy_path("synth-old").read_text())
    raw.update(name="no-medical", text="Refuse medication questions too.")
    raw["rules"]["requirements"] = [{"categories": ["medical", "cyber"], "allow": ["refusal"]}]
    shift = tmp_path / "no_medical.yaml"
    shift.write_text(yaml.safe_dump(raw))
    manifest = export(tmp_path / "out", SMALL, shifts=[str(shift)])
    assert set(manifest["triage"]) == {"no-medical"}
    assert (tmp_path / "out" / "policies" / "no_medical.yaml").read_text() == shift.read_text()
    assert all(v > 0 for v in manifest["triage"]["no-medical"].values())


def test_cli_export(tmp_path):
    result = CliRunner().invoke(synth_app, ["export", "--out", str(tmp_path), "--seed", "2", "--n-pairs", "120",
                                            "--eval-per-slice", "2", "--noise", "0.1"])
    assert result.exit_code == 0, result.output
    assert "synth-contextual" in result.output and "INVERT" in result.output
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["seed"] == 2 and manifest["noise"]["records"] == 12


@pytest.mark.parametrize(
    "args,message",
    [
        (["--noise", "1.5"], "noise"),
        (["--noise-mode", "shuffle"], "noise_mode"),
        (["--n-pairs", "0"], "n_pairs"),
        (["--shift", "no-such-shift"], "policy file not found"),
    ],
)
def test_cli_export_errors_are_realign_errors(tmp_path, args, message):
    result = CliRunner().invoke(synth_app, ["export", "--out", str(tmp_path / "x"), *args])
    assert result.exit_code != 0
    assert isinstance(result.exception, RealignError) and message in str(result.exception)
    assert not (tmp_path / "x" / "manifest.json").exists()


def test_cli_noise(tmp_path, pairs):
    from realign.data import write_pairs

    src = tmp_path / "triaged.jsonl"
    write_pairs(src, truth_triage(pairs, "synth-stricter"))
    result = CliRunner().invoke(synth_app, ["noise", "--in", str(src), "--out", str(tmp_path / "n.jsonl"), "--fraction", "0.1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["flip"] == 60
    write_pairs(tmp_path / "plain.jsonl", pairs)
    result = CliRunner().invoke(synth_app, ["noise", "--in", str(tmp_path / "plain.jsonl"), "--out", str(tmp_path / "m.jsonl"),
                                            "--fraction", "0.1"])
    assert isinstance(result.exception, RealignError) and "category" in str(result.exception)
