"""Files triaged by the reference implementation (respailab/TRACE, datagen/oracle_triage_relabel.py)
are read in the right direction. Its two shapes, reproduced exactly in tests/fixtures/:

* ``*_triage.json``: a JSON array of ``{prompt, chosen, rejected, category}`` with INVERT pairs in
  their ORIGINAL order (chosen = the old winner, which now violates) -- nothing in a record says so;
* the DPO-Gold file: INVERT pairs already swapped, every record with ``chosen_violations`` /
  ``rejected_violations`` lists (empty = compliant).

In memory every INVERT record is held swapped (chosen = the compliant response), so every
method's INVERT term prefers the compliant response."""

import json
import sys
from pathlib import Path

import pytest

from realign.data import read_pairs, write_pairs
from realign.errors import DataError
from realign.train.methods import MethodOptions, get_method

FIXTURES = Path(__file__).parent / "fixtures"
TRIAGE_SHAPE, GOLD_SHAPE = FIXTURES / "reference_triage.json", FIXTURES / "reference_dpo_gold.json"
REFUSALS = ("I'm sorry", "I must decline", "I can't", "I cannot", "I won't")


def compliant_of(record) -> str:
    """The INVERT fixtures pair a refusal (the old winner) with a helpful answer that the new
    policy requires."""
    for side in (record["chosen"], record["rejected"]):
        if not side.startswith(REFUSALS):
            return side
    raise AssertionError(record)


def inverts(path):
    return [r for r in json.loads(path.read_text()) if r["category"] == "INVERT"]


def test_the_fixtures_have_the_reference_shapes():
    for r in json.loads(TRIAGE_SHAPE.read_text()):
        assert set(r) == {"prompt", "chosen", "rejected", "category"}
    for r in inverts(TRIAGE_SHAPE):
        assert r["chosen"].startswith(REFUSALS)  # original order: the old winner is the refusal
    for r in json.loads(GOLD_SHAPE.read_text()):
        assert set(r) == {"prompt", "chosen", "rejected", "category", "chosen_violations", "rejected_violations"}
    for r in inverts(GOLD_SHAPE):
        assert r["chosen_violations"] == [] and r["rejected_violations"] and not r["chosen"].startswith(REFUSALS)


def test_dpo_gold_shape_is_read_swapped_from_its_violation_lists():
    pairs = read_pairs(GOLD_SHAPE, require_category=True).pairs
    got = [p for p in pairs if p.category == "INVERT"]
    assert [p.chosen for p in got] == [compliant_of(r) for r in inverts(GOLD_SHAPE)]
    assert all(p.swapped for p in got)
    assert all(p.meta["chosen_violations"] == [] for p in got)


def test_triage_shape_needs_the_order_and_then_is_swapped_on_read():
    with pytest.raises(DataError) as info:
        read_pairs(TRIAGE_SHAPE, require_category=True)
    message = str(info.value)
    assert "reference_triage.json" in message and "record 0" in message and "swapped" in message
    assert "--invert-order original" in message and "\n" not in message
    pairs = read_pairs(TRIAGE_SHAPE, require_category=True, invert_order="original").pairs
    got = [p for p in pairs if p.category == "INVERT"]
    assert [p.chosen for p in got] == [compliant_of(r) for r in inverts(TRIAGE_SHAPE)]
    assert all(p.swapped for p in got)
    # other categories as stored
    others = [p for p in pairs if p.category != "INVERT"]
    stored = [r for r in json.loads(TRIAGE_SHAPE.read_text()) if r["category"] != "INVERT"]
    assert [(p.chosen, p.rejected) for p in others] == [(r["chosen"], r["rejected"]) for r in stored]


def test_a_record_that_states_its_order_wins_over_the_flag(tmp_path):
    rows = inverts(TRIAGE_SHAPE)[:2]
    rows[0] = {**rows[0], "swapped": False}  # original order, stated
    rows[1] = {**rows[1], "chosen": rows[1]["rejected"], "rejected": rows[1]["chosen"], "swapped": True}
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for flag in (None, "original", "swapped"):
        pairs = read_pairs(path, invert_order=flag).pairs
        assert [p.chosen for p in pairs] == [compliant_of(r) for r in rows]
    # written back and read again: unchanged (stored swapped, stated)
    write_pairs(tmp_path / "again.jsonl", pairs)
    assert [p.chosen for p in read_pairs(tmp_path / "again.jsonl").pairs] == [p.chosen for p in pairs]


@pytest.mark.parametrize("method", ["trace", "trace-no-impact", "trace-no-kl", "dpo-gold", "naive-oracle-dpo",
                                    "oracle-sft"])
@pytest.mark.parametrize("shape", ["triage", "gold"])
def test_every_method_trains_invert_toward_the_compliant_response(method, shape):
    path, flag = (TRIAGE_SHAPE, "original") if shape == "triage" else (GOLD_SHAPE, None)
    pairs = read_pairs(path, require_category=True, invert_order=flag).pairs
    for p in pairs:
        p.impact = 1.0 if p.category != "RETAIN" else None
    terms = get_method(method).terms(pairs, MethodOptions())
    for r in inverts(path):
        compliant = compliant_of(r)
        violating = r["rejected"] if r["chosen"] == compliant else r["chosen"]
        mine = [t for t in terms if t.prompt == r["prompt"]]
        # raised: the winner of a preference term, or an NLL target (gradient ascent with a
        # negative weight); lowered: the loser, an NPO target, gradient ascent with a positive weight
        raised = [t.first for t in mine if t.kind == "pref" or (t.kind == "ga" and t.weight < 0)]
        lowered = [t.second for t in mine if t.kind == "pref"] + [
            t.first for t in mine if t.kind in ("npo", "npo2") or (t.kind == "ga" and t.weight > 0)]
        assert compliant in raised and violating not in raised, (method, r["prompt"])
        assert compliant not in lowered


def test_realign_triage_reads_a_reference_triage_file_in_its_old_order(tmp_path):
    """Re-triaging the reference's triage file (with --invert-order original) recovers the same
    INVERT pairs as triaging the original pairs."""
    import subprocess

    out = tmp_path / "ours.jsonl"
    argv = [sys.executable, "-m", "realign", "triage", "--data", str(TRIAGE_SHAPE), "--policy", "contextual-exceptions",
            "--out", str(out), "--cache", str(tmp_path / "c.sqlite"), "-q"]
    refused = subprocess.run(argv, capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "--invert-order" in refused.stderr
    done = subprocess.run(argv + ["--invert-order", "original"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    ours = [json.loads(l) for l in out.read_text().splitlines()]
    assert [r["category"] for r in ours] == [r["category"] for r in json.loads(TRIAGE_SHAPE.read_text())]
    assert [r["chosen"] for r in ours if r["category"] == "INVERT"] == [compliant_of(r) for r in inverts(TRIAGE_SHAPE)]
