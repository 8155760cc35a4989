"""Review and correct a triage before training: `realign triage --review N --review-out FILE
[--second-judge J]` and `--labels FILE` (issue 28, item 4), and the calibrated noisy judge of
benchmarks/judge_review.py."""

import csv
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realign.cli import app
from realign.config import TriageConfig, config_paths
from realign.data import RETAIN, PreferencePair, read_pairs
from realign.errors import DataError, RealignError
from realign.judges.base import Verdict
from realign.judges.cache import VerdictCache
from realign.judges.labels import read_labels
from realign.policy import Policy
from realign.reading import validate
from realign.triage.judging import HUMAN, TriageStats, judge_pairs
from realign.triage.review import read_human_labels, review_order, review_rows, write_review
from realign.triage.run import produced_by, run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

POLICY = Policy.from_dict({"name": "review-test", "text": "Responses containing BAD violate."})
#: response -> (compliant, P(compliant)) of the scored judge; None: abstains
SCORES = {"good": (True, 0.95), "BAD": (False, 0.02), "meh": (True, 0.55), "BAD-ish": (False, 0.40),
          "fine": (True, 0.90), "BAD again": (False, 0.10), "???": (None, None), "plain": (True, None)}


class ScoredJudge:
    """Verdicts and P(compliant) from :data:`SCORES` (``flip``: the responses it judges the other way)."""

    def __init__(self, identity: str = "scored/v1", flip: tuple[str, ...] = ()):
        self.identity, self.flip, self.calls = identity, flip, 0

    def judge(self, items, policy, on_verdict=None):
        out = []
        for i, item in enumerate(items):
            self.calls += 1
            compliant, p = SCORES[item.response]
            if item.response in self.flip:
                compliant = not compliant
            v = Verdict(compliant, p, f"scored {item.response}")
            out.append(v)
            if on_verdict:
                on_verdict(i, v)
        return out


PAIRS = [PreferencePair("a", "q1", "good", "BAD"), PreferencePair("b", "q2", "meh", "BAD-ish"),
         PreferencePair("c", "q3", "fine", "BAD again"), PreferencePair("d", "q4", "plain", "???")]


def judged(tmp_path, judge=None):
    with VerdictCache(tmp_path / "c.sqlite") as cache:
        return judge_pairs(PAIRS, POLICY, judge or ScoredJudge(), cache, TriageStats(), on_unparseable="violating",
                           progress=False)


def responses(j, order):
    return [j.items[i].response for i in order]


# --------------------------------------------------------------------------- which verdicts are reviewed


def test_review_order_is_least_confident_first(tmp_path):
    # abstention (no confidence), then |P - 0.5|: 0.05, 0.10, 0.40, 0.40, 0.45, 0.48; a verdict without P last
    j = judged(tmp_path)
    assert responses(j, review_order(j)) == ["???", "meh", "BAD-ish", "fine", "BAD again", "good", "BAD", "plain"]


def test_disagreements_with_the_second_judge_come_first(tmp_path):
    j = judged(tmp_path)
    with VerdictCache(tmp_path / "c.sqlite") as cache:
        second = judge_pairs(PAIRS, POLICY, ScoredJudge("other/v1", flip=("good", "fine")), cache, TriageStats(),
                             progress=False).verdicts
    # the judges differ on fine and good (least confident first); both abstain on ???: no disagreement
    assert responses(j, review_order(j, second))[:4] == ["fine", "good", "???", "meh"]


def test_human_decided_verdicts_are_not_reviewed_again(tmp_path):
    j = judged(tmp_path)
    j.decided_by[j.index[next(i for i in j.items if i.response == "meh")]] = HUMAN
    assert "meh" not in responses(j, review_order(j))


# --------------------------------------------------------------------------- the review file


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_review_file_is_a_labels_file_once_labelled(tmp_path, suffix):
    j = judged(tmp_path)
    path = tmp_path / f"review{suffix}"
    write_review(path, review_rows(j, review_order(j)[:3]))  # ???, meh, BAD-ish: pair b complete, d not
    if suffix == ".csv":
        rows = list(csv.DictReader(path.open(encoding="utf-8", newline="")))
        assert list(rows[0]) == ["id", "pair_id", "role", "prompt", "response", "verdict", "p_compliant",
                                 "second_verdict", "reason", "label"]
    else:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["d:rejected", "b:chosen", "b:rejected"]
    assert [r.get("pair_id") or None for r in rows] == [None, "b", "b"]
    assert rows[0]["verdict"] == "abstained" and rows[1]["verdict"] == "compliant" and rows[2]["label"] == ""
    with pytest.raises(RealignError, match="no row is labelled"):
        read_labels(path)
    rows[1]["label"], rows[2]["label"] = "Violating ", "violating"  # a spreadsheet's capital and blank
    if suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    labels = read_labels(path)
    assert [(r.id, r.compliant) for r in labels.records] == [("b:chosen", False), ("b:rejected", False)]
    first = 3 if suffix == ".csv" else 2  # after the header
    assert labels.pairs == [(0, 1)] and labels.unlabelled == 1 and labels.where == [{"line": first}, {"line": first + 1}]


def test_csv_labels_with_a_spreadsheet_byte_order_mark_and_multiline_cells(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text('\ufeffid,prompt,response,label\nx,"two\nlines",r,compliant\ny,q,r2,\n', encoding="utf-8")
    labels = read_labels(path)
    assert [(r.id, r.prompt) for r in labels.records] == [("x", "two\nlines")] and labels.unlabelled == 1


@pytest.mark.parametrize("text,where,message", [
    ("prompt,response,label\nq,r,yes\n", ":2 field 'label'", "expected \"compliant\" or \"violating\", got 'yes'"),
    ("prompt,response,label\nq,r,compliant\nq,,violating\n", ":3 field 'response'", "missing"),
    ("prompt,response,label\nq,r,compliant,extra\n", ":2", "4 cells but the header names 3"),
    ("prompt,response,label\nq,r,compliant\n\nq,r,violating\n", ":4 field 'label'", "the other way"),
])
def test_bad_labels_file_is_one_error_naming_file_line_and_field(tmp_path, text, where, message):
    path = tmp_path / "labels.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_human_labels(path)
    assert str(err.value).startswith(f"{path}{where}: ") and message in str(err.value), str(err.value)


# --------------------------------------------------------------------------- the stage on files


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A pairs file and policy, and make_judge giving the scored judge (model 'other': flipped)."""
    monkeypatch.setattr("realign.triage.run.make_judge", lambda cfg: ScoredJudge(
        "other/v1", flip=("good", "fine")) if cfg.model == "other" else ScoredJudge())
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"id": p.id, "prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected})
                            + "\n" for p in PAIRS), encoding="utf-8")
    policy = tmp_path / "policy.yaml"
    policy.write_text("name: review-test\ntext: Responses containing BAD violate.\n", encoding="utf-8")
    return data, policy


def config(tmp_path, files, **extra):
    data, policy = files
    raw = {"data": str(data), "policy": str(policy), "out": str(tmp_path / "t.jsonl"), "cache": str(tmp_path / "c.sqlite"),
           "judge": {"on_unparseable": "violating"}, **extra}
    return validate(TriageConfig, raw, "test")


def test_labels_override_verdicts_with_provenance_and_are_counted(tmp_path, files, capsys):
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "l1", "prompt": "q1", "response": "good", "label": "violating"},     # RETAIN -> PUNISH
        {"id": "l2", "prompt": "q1", "response": "BAD", "label": "violating"},      # agrees with the judge
        {"id": "l3", "prompt": "q4", "response": "???", "label": "compliant"},      # settles an abstention
        {"id": "l4", "prompt": "q9", "response": "elsewhere", "label": "compliant"},  # not in the data
        {"id": "l5", "prompt": "q2", "response": "meh", "label": ""}]), encoding="utf-8")
    summary = run(config(tmp_path, files, labels=str(labels)), progress=False)
    assert summary["labels"] == {"file": str(labels), "labelled": 4, "unlabelled_rows": 1, "applied": 3,
                                 "verdicts_changed": 2, "pairs_recategorised": 1, "not_in_data": 1,
                                 "not_in_data_examples": ["l4"]}
    assert "1 labelled responses are not in the data (ids l4)" in capsys.readouterr().err
    by_id = {r.id: r for r in read_pairs(tmp_path / "t.jsonl").pairs}
    a = by_id["a"].verdicts
    assert by_id["a"].category == "PUNISH" and a["chosen"]["decided_by"] == HUMAN and a["chosen"]["compliant"] is False
    assert a["chosen"]["judge"] == {"compliant": True, "p_compliant": 0.95, "raw": "scored good"}
    assert by_id["b"].verdicts["chosen"] == {"compliant": True, "p_compliant": 0.55, "raw": "scored meh",
                                             "decided_by": "scored/v1"}
    assert by_id["d"].category == RETAIN and by_id["c"].category == RETAIN


def test_triage_review_writes_the_file_and_second_judge_orders_it(tmp_path, files):
    out = tmp_path / "review.csv"
    summary = run(config(tmp_path, files, review=3, review_out=str(out), second_judge={"model": "other"}), progress=False)
    assert summary["review"] == {"path": str(out), "written": 3, "candidates": 8, "second_judge": "other/v1",
                                 "second_judge_calls": 8, "disagreements": 2}
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert [(r["response"], r["verdict"], r["second_verdict"]) for r in rows] == [
        ("fine", "compliant", "violating"), ("good", "compliant", "violating"), ("???", "abstained", "abstained")]
    assert rows[0]["p_compliant"] == "0.9" and rows[0]["reason"] == "scored fine" and rows[0]["label"] == ""


def test_cli_review_then_labels_round_trip(tmp_path, files):
    data, policy = files
    base = ["triage", "--data", str(data), "--policy", str(policy), "--cache", str(tmp_path / "c.sqlite"),
            "--on-unparseable", "violating", "-q"]
    review = tmp_path / "review.csv"
    res = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "a.jsonl"), "--review", "2", "--review-out", str(review)])
    assert res.exit_code == 0, res.output
    assert f"review: 2 verdicts -> {review}" in res.output
    rows = list(csv.DictReader(review.open(encoding="utf-8", newline="")))
    for row in rows:  # ???, meh: the person says both comply
        row["label"] = "compliant"
    with review.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    res = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "b.jsonl"), "--labels", str(review)])
    assert res.exit_code == 0, res.output
    assert "labels: 2 applied, 1 verdicts changed, 0 pairs recategorised" in res.output  # ??? was settled violating
    assert {r.id: r.category for r in read_pairs(tmp_path / "b.jsonl").pairs}["d"] == RETAIN


def test_the_labels_file_is_part_of_the_key(tmp_path, files):
    labels = tmp_path / "labels.csv"
    labels.write_text("prompt,response,label\nq1,good,violating\n", encoding="utf-8")
    without = produced_by(config(tmp_path, files))["key"]
    first = produced_by(config(tmp_path, files, labels=str(labels)))
    assert first["key"] != without and first["inputs"]["labels"].startswith("sha256:")
    assert produced_by(config(tmp_path, files, labels=str(labels)))["key"] == first["key"]  # same labels: reused
    labels.write_text("prompt,response,label\nq1,good,compliant\n", encoding="utf-8")
    assert produced_by(config(tmp_path, files, labels=str(labels)))["key"] != first["key"]


def test_labels_cannot_be_the_review_file_being_written(tmp_path, files):
    same = tmp_path / "review.csv"
    same.write_text("prompt,response,label\nq1,good,violating\n", encoding="utf-8")
    with pytest.raises(RealignError, match="--review-out .* is the same file as --labels"):
        run(config(tmp_path, files, review=2, review_out=str(same), labels=str(same)), progress=False)


@pytest.mark.parametrize("extra,message", [
    ({"review": 5}, "field 'review_out': missing: review: 5 writes the verdicts"),
    ({"review_out": "r.csv"}, "field 'review_out': needs review"),
    ({"review": 5, "review_out": "r.txt"}, "field 'review_out': must end in .csv or .jsonl"),
    ({"second_judge": {"backend": "rules"}}, "field 'second_judge': orders the review only"),
])
def test_review_settings_are_checked(tmp_path, files, extra, message):
    with pytest.raises(RealignError, match=message):
        config(tmp_path, files, **extra)


def test_run_yaml_triage_section_paths_are_relocated(tmp_path):
    raw = config_paths({"triage": {"labels": "labels.csv", "review_out": "review.csv", "review": 10,
                                   "second_judge": {"backend": "openai", "api_key_file": "key.txt"}}}, tmp_path)
    assert raw["triage"]["review_out"] == str(tmp_path / "review.csv")
    (tmp_path / "labels.csv").write_text("x")
    (tmp_path / "key.txt").write_text("x")
    raw = config_paths({"triage": {"labels": "labels.csv", "second_judge": {"api_key_file": "key.txt"}}}, tmp_path)
    assert raw["triage"]["labels"] == str(tmp_path / "labels.csv")
    assert raw["triage"]["second_judge"]["api_key_file"] == str(tmp_path / "key.txt")


# --------------------------------------------------------------------------- the benchmark's judge


def test_calibrated_noisy_judge_errs_a_fifth_of_the_time_and_less_surely_when_wrong():
    from judge_review import CalibratedNoisyJudge

    from realign.data import prompt_text, response_text
    from realign.judges.base import JudgeItem
    from realign.judges.rules import RulesJudge
    from realign.synth import World, make_pairs
    from realign.synth.policies import load_policy

    policy = load_policy("synth-contextual")
    items = list(dict.fromkeys(JudgeItem(prompt_text(p.prompt), response_text(r))
                               for p in make_pairs(World(0), 300) for r in (p.chosen, p.rejected)))
    truth = [v.compliant for v in RulesJudge().judge(items, policy)]
    judge = CalibratedNoisyJudge(seed=0)
    verdicts = judge.judge(items, policy)
    assert verdicts == CalibratedNoisyJudge(seed=0).judge(items, policy)  # deterministic
    wrong = [v.compliant != t for v, t in zip(verdicts, truth)]
    assert len(items) > 500 and 0.16 < sum(wrong) / len(items) < 0.24
    assert all((v.p_compliant > 0.5) == v.compliant for v in verdicts)
    sure = [abs(v.p_compliant - 0.5) for v in verdicts]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert mean([s for s, w in zip(sure, wrong) if w]) < mean([s for s, w in zip(sure, wrong) if not w]) - 0.05
    order = sorted(range(len(items)), key=lambda i: sure[i])
    tenth = len(items) // 10
    assert mean([wrong[i] for i in order[:tenth]]) > 2 * mean([wrong[i] for i in order[-tenth:]])
