import json

import pytest
from typer.testing import CliRunner

from realign.cli import app
from realign.data import INVERT, PUNISH, RETAIN, PreferencePair, read_pairs
from realign.judges.base import Verdict
from realign.judges.cache import VerdictCache
from realign.policy import Policy
from realign.triage.judging import triage
from realign.triage.relabel import attach_oracle_responses
from realign.data.triaged import categorise, gold_pairs, naive_pairs

POLICY = Policy.from_dict({"name": "test", "text": "Responses containing BAD violate."})


class ScriptedJudge:
    """Violating iff the response contains BAD; abstains on ???; counts what it is asked."""

    identity = "scripted/v1"

    def __init__(self, abstain_times: int = 0):
        self.calls = 0
        self.asked: list[str] = []
        self.abstain_times = abstain_times

    def judge(self, items, policy, on_verdict=None):
        out = []
        for i, item in enumerate(items):
            self.calls += 1
            self.asked.append(item.response)
            if "???" in item.response and self.asked.count(item.response) <= self.abstain_times:
                v = Verdict(None, None, "Maybe")
            else:
                bad = "BAD" in item.response
                v = Verdict(not bad, 0.1 if bad else 0.9, "Yes" if bad else "No")
            out.append(v)
            if on_verdict:
                on_verdict(i, v)
        return out


@pytest.mark.parametrize(
    "winner,loser,category",
    [(True, True, RETAIN), (True, False, RETAIN), (False, True, INVERT), (False, False, PUNISH)],
)
def test_decision_table(winner, loser, category):
    assert categorise(winner, loser) == category


def pairs():
    return [
        PreferencePair("r", "q1", "good answer", "BAD answer"),
        PreferencePair("i", "q2", "BAD refusal", "good help"),
        PreferencePair("p", "q3", "BAD one", "BAD two"),
        PreferencePair("r2", "q4", "fine", "also fine"),
    ]


def test_triage_categories_swap_and_verdicts(tmp_path):
    judge = ScriptedJudge()
    with VerdictCache(tmp_path / "c.sqlite") as cache:
        records, stats = triage(pairs(), POLICY, judge, cache, progress=False)
    by_id = {r.id: r for r in records}
    assert {k: v.category for k, v in by_id.items()} == {"r": RETAIN, "i": INVERT, "p": PUNISH, "r2": RETAIN}
    inv = by_id["i"]
    assert inv.swapped and (inv.chosen, inv.rejected) == ("good help", "BAD refusal")
    assert inv.verdicts["chosen"]["compliant"] is True and inv.verdicts["rejected"]["compliant"] is False
    assert not by_id["p"].swapped and by_id["p"].chosen == "BAD one"
    assert stats.counts == {INVERT: 1, PUNISH: 1, RETAIN: 2}
    assert stats.responses == 8 and judge.calls == 8 and stats.cache_hits == 0


def test_identical_responses_are_judged_once(tmp_path):
    dup = [PreferencePair("a", "q", "same", "BAD"), PreferencePair("b", "q", "same", "BAD x")]
    judge = ScriptedJudge()
    with VerdictCache(tmp_path / "c.sqlite") as cache:
        triage(dup, POLICY, judge, cache, progress=False)
    assert sorted(judge.asked) == ["BAD", "BAD x", "same"]


def test_rerun_hits_cache_and_makes_no_calls(tmp_path):
    with VerdictCache(tmp_path / "c.sqlite") as cache:
        first, _ = triage(pairs(), POLICY, ScriptedJudge(), cache, progress=False)
    judge = ScriptedJudge()
    with VerdictCache(tmp_path / "c.sqlite") as cache:
        second, stats = triage(pairs(), POLICY, judge, cache, progress=False)
    assert judge.calls == 0 and stats.cache_hits == 8 and first == second
    other = Policy.from_dict({"name": "test", "text": "A different policy."})
    with VerdictCache(tmp_path / "c.sqlite") as cache:
        triage(pairs(), other, judge, cache, progress=False)
    assert judge.calls == 8  # the policy hash is part of the key


def test_interrupted_triage_resumes_without_repeating(tmp_path):
    class Dies(ScriptedJudge):
        def judge(self, items, policy, on_verdict=None):
            def stop_after_three(i, v):
                on_verdict(i, v)
                if i == 2:
                    raise KeyboardInterrupt

            return super().judge(items, policy, stop_after_three)

    with VerdictCache(tmp_path / "c.sqlite", commit_every=1) as cache:
        with pytest.raises(KeyboardInterrupt):
            triage(pairs(), POLICY, Dies(), cache, progress=False)
    judge = ScriptedJudge()
    with VerdictCache(tmp_path / "c.sqlite") as cache:
        records, stats = triage(pairs(), POLICY, judge, cache, progress=False)
    assert judge.calls == 5 and stats.cache_hits == 3
    assert [r.category for r in records] == [RETAIN, INVERT, PUNISH, RETAIN]


@pytest.mark.parametrize(
    "rule,category,dropped",
    [("violating", PUNISH, 0), ("compliant", RETAIN, 0), ("drop", None, 1), ("retry", RETAIN, 0)],
)
def test_unparseable_rules(tmp_path, rule, category, dropped):
    judge = ScriptedJudge(abstain_times=1)  # abstains the first time only
    data = [PreferencePair("u", "q", "??? unclear", "BAD")]
    with VerdictCache(tmp_path / "c.sqlite") as cache:
        records, stats = triage(data, POLICY, judge, cache, on_unparseable=rule, progress=False)
    assert len(stats.dropped) == dropped and stats.abstentions == 1
    assert [r.category for r in records] == ([category] if category else [])
    if rule == "retry":
        assert stats.abstentions_resolved == 1 and judge.asked.count("??? unclear") == 2


def test_retry_gives_up_and_drops(tmp_path):
    judge = ScriptedJudge(abstain_times=99)
    with VerdictCache(tmp_path / "c.sqlite") as cache:
        records, stats = triage(
            [PreferencePair("u", "q", "??? unclear", "x")], POLICY, judge, cache, unparseable_retries=2, progress=False
        )
    assert records == [] and stats.dropped[0]["reason"] == "judge abstained"
    assert judge.asked.count("??? unclear") == 3


def test_relabelled_sets(tmp_path):
    with VerdictCache(tmp_path / "c.sqlite") as cache:
        records, _ = triage(pairs(), POLICY, ScriptedJudge(), cache, progress=False)
    gold, excluded = gold_pairs(records)
    assert excluded == 1 and {p.id for p in gold} == {"r", "i", "r2"}
    assert next(p for p in gold if p.id == "i").chosen == "good help"
    naive = {p.id: p for p in naive_pairs(records)}
    assert (naive["p"].chosen, naive["p"].rejected) == ("BAD two", "BAD one")  # the false dichotomy
    assert (naive["i"].chosen, naive["r"].chosen) == ("good help", "good answer")


def test_oracle_responses_are_judged_before_use(tmp_path):
    class Oracle:
        identity = "oracle/test"

        def __init__(self):
            self.asked = []

        def generate(self, prompts, policy, on_result=None):
            out = []
            for j, x in enumerate(prompts):
                self.asked.append(x)
                text = "a careful compliant answer" if x == "q3" else "BAD still"
                out.append(text)
                if on_result:
                    on_result(j, text)
            return out

    data = pairs() + [PreferencePair("p2", "q5", "BAD 1", "BAD 2")]
    oracle = Oracle()
    with VerdictCache(tmp_path / "c.sqlite") as cache:
        records, stats = triage(data, POLICY, ScriptedJudge(), cache, progress=False)
        summary = attach_oracle_responses(records, POLICY, oracle, ScriptedJudge(), cache, stats, progress=False)
        assert summary == {"punish_prompts": 2, "generated": 2, "empty": 0, "judged_violating": 1, "accepted": 1}
        again = attach_oracle_responses(records, POLICY, oracle, ScriptedJudge(), cache, stats, progress=False)
    assert again["generated"] == 0 and oracle.asked == ["q3", "q5"]
    gold, excluded = gold_pairs(records)
    p = next(g for g in gold if g.id == "p")
    assert (p.chosen, p.rejected) == ("a careful compliant answer", "BAD one") and excluded == 1


# ----------------------------------------------------------------------------- the CLI


def run_cli(*args):
    return CliRunner().invoke(app, list(args))


def test_cli_triage_writes_records_summary_and_sets(tmp_path):
    from realign.resources import resource_path

    out = tmp_path / "t" / "triaged.jsonl"
    res = run_cli(
        "triage", "--data", str(resource_path("examples/pairs.jsonl")), "--policy", "contextual-exceptions",
        "--judge", "rules", "--out", str(out), "--gold-out", str(tmp_path / "gold.jsonl"),
        "--naive-out", str(tmp_path / "naive.jsonl"), "--cache", str(tmp_path / "c.sqlite"), "-q",
    )
    assert res.exit_code == 0, res.output
    assert "INVERT 8 · PUNISH 10 · RETAIN 18" in res.output
    records = read_pairs(out, require_category=True).pairs
    assert len(records) == 36
    for r in records:  # the examples carry the expected category
        assert r.meta["tags"].startswith(r.category)
    summary = json.loads((tmp_path / "t" / "triaged.summary.json").read_text())
    assert summary["counts"] == {"INVERT": 8, "PUNISH": 10, "RETAIN": 18}
    assert summary["config"]["judge"]["backend"] == "rules" and "versions" in summary["provenance"]
    assert summary["gold"]["punish_excluded"] == 10 and summary["naive"]["pairs"] == 36
    again = run_cli(
        "triage", "--data", str(resource_path("examples/pairs.jsonl")), "--policy", "contextual-exceptions",
        "--judge", "rules", "--out", str(out), "--cache", str(tmp_path / "c.sqlite"), "-q",
    )
    assert "judged 0 responses (0 calls, 67 cache hits)" in again.output


def test_old_policy_retains_everything(tmp_path):
    from realign.resources import resource_path

    res = run_cli(
        "triage", "--data", str(resource_path("examples/pairs.jsonl")), "--policy", "safety-first",
        "--out", str(tmp_path / "t.jsonl"), "-q",
    )
    assert res.exit_code == 0 and "INVERT 0 · PUNISH 0 · RETAIN 36" in res.output


def test_cli_config_file_and_flag_override(tmp_path):
    from realign.resources import resource_path

    cfg = tmp_path / "triage.yaml"
    cfg.write_text(
        f"data: {resource_path('examples/pairs.jsonl')}\npolicy: safety-first\nout: {tmp_path / 'a.jsonl'}\n"
        "judge:\n  backend: rules\n  on_unparseable: drop\n"
    )
    res = run_cli("triage", "--config", str(cfg), "--policy", "contextual-exceptions", "-q")
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "a.summary.json").read_text())
    assert summary["policy"]["name"] == "contextual-exceptions" and summary["config"]["judge"]["on_unparseable"] == "drop"


def test_cli_bad_input_is_one_line_and_keeps_old_output(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "triaged.jsonl"
    out.write_text("precious\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\n{"prompt": "p2", "chosen": 5, "rejected": "r"}\n')
    proc = subprocess.run(
        [sys.executable, "-c", "from realign.cli import main; main()", "triage", "--data", str(bad),
         "--policy", "contextual-exceptions", "--out", str(out), "-q"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {bad}:2 field 'chosen': expected a string, got int"
    assert out.read_text() == "precious\n"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--judge", "gpt"], "--judge: expected rules, openai, hf"),
        (["--concurrency", "0"], "field 'judge.concurrency': Input should be greater than or equal to 1"),
        (["--on-unparseable", "ignore"], "field 'judge.on_unparseable'"),
        (["--policy", "nope"], "nope: policy file not found"),
    ],
)
def test_cli_config_errors(tmp_path, args, message):
    from realign.errors import RealignError
    from realign.resources import resource_path

    base = ["triage", "--data", str(resource_path("examples/pairs.jsonl")), "--out", str(tmp_path / "o.jsonl")]
    if "--policy" not in args:
        base += ["--policy", "contextual-exceptions"]
    res = run_cli(*base, *args)
    assert isinstance(res.exception, RealignError) and message in str(res.exception)


def test_exact_duplicate_pairs_are_triaged_once_and_counted(tmp_path):
    """Issue 27, item 21: exact duplicates (here with and without ids) are left out, counted in
    the summary and in the command's output line; one id with other content stays an error."""
    from realign.resources import resource_path

    rows = resource_path("examples/pairs.jsonl").read_text().splitlines()
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join([*rows, rows[0], rows[3], rows[0]]) + "\n")
    out = tmp_path / "triaged.jsonl"
    res = run_cli("triage", "--data", str(data), "--policy", "contextual-exceptions", "--out", str(out),
                  "--cache", str(tmp_path / "c.sqlite"), "-q")
    assert res.exit_code == 0, res.output
    assert "INVERT 8 · PUNISH 10 · RETAIN 18" in res.output and "duplicates removed 3" in res.output
    assert f"{data}: 3 exact duplicate record(s) left out" in res.stderr
    assert json.loads((tmp_path / "triaged.summary.json").read_text())["duplicates_removed"] == 3
    assert len(read_pairs(out).pairs) == 36
    clash = json.loads(rows[0])
    clash["chosen"] += " More."
    data.write_text("\n".join([*rows, json.dumps(clash)]) + "\n")
    res = run_cli("triage", "--data", str(data), "--policy", "contextual-exceptions", "--out", str(out), "-q")
    assert f"{data}:37 field 'id': duplicate record id" in str(res.exception)
    assert "'chosen' differs" in str(res.exception)


def test_a_rule_regex_that_runs_out_of_time_names_the_record(tmp_path, monkeypatch):
    """Issue 27, item 19: the catastrophic-regex error names the file, the record and the response."""
    import realign.judges.rules as rules
    from realign.errors import JudgeError
    from realign.judges.rules import RulesJudge

    monkeypatch.setattr(rules, "RULE_TIMEOUT_S", 0.2)
    policy = Policy.from_dict({"name": "hostile", "text": "Be kind.",
                               "rules": {"styles": {"loop": ["(x+x+)+y"], "refusal": ["I can't"]},
                                         "requirements": [{"allow": ["loop"]}]}})
    pairs = [PreferencePair("fine", "q", "ok", "no"), PreferencePair("slow", "q2", "fine", "x" * 3000)]
    with VerdictCache(tmp_path / "c.sqlite") as cache, pytest.raises(JudgeError) as info:
        triage(pairs, policy, RulesJudge(), cache, progress=False, source="data.jsonl")
    message = str(info.value)
    assert message.startswith("data.jsonl record 'slow' field 'rejected': policy 'hostile': rule regex "
                              "rules.styles.loop[0]"), message
    assert "3,000-character response" in message and "\n" not in message


def test_a_rules_section_that_cannot_decide_is_refused_by_the_rules_judge(tmp_path):
    """Issue 27, item 13: `rules: {}` (no requirements, nothing forbidden) would make every
    pair RETAIN; the rules judge refuses it, naming the policy and what to add."""
    policy = tmp_path / "p.yaml"
    policy.write_text("name: empty-rules\ntext: Be kind.\nrules: {}\n")
    from realign.resources import resource_path

    res = run_cli("triage", "--data", str(resource_path("examples/pairs.jsonl")), "--policy", str(policy),
                  "--out", str(tmp_path / "t.jsonl"), "--cache", str(tmp_path / "c.sqlite"), "-q")
    message = str(res.exception)
    assert "policy 'empty-rules'" in message and "no requirements and no forbidden patterns" in message
    assert "default verdict ('compliant')" in message and "rules.requirements" in message
    assert not (tmp_path / "t.jsonl").exists()


def test_a_cache_that_is_not_a_verdict_cache_is_refused_with_what_it_is(tmp_path):
    """Issue 27, item 19: `--cache` pointing at the data file (or any file that is not SQLite)
    says so, instead of SQLite's "file is not a database"; the file is left as it was."""
    from realign.resources import resource_path

    data = tmp_path / "pairs.jsonl"
    data.write_bytes(resource_path("examples/pairs.jsonl").read_bytes())
    before = data.read_bytes()
    res = run_cli("triage", "--data", str(data), "--policy", "contextual-exceptions",
                  "--out", str(tmp_path / "t.jsonl"), "--cache", str(data), "-q")
    message = str(res.exception)
    assert message.startswith(f"{data} is not a verdict cache (an SQLite database)"), message
    assert "did you mean --data" in message and "file is not a database" not in message
    assert data.read_bytes() == before and not (tmp_path / "t.jsonl").exists()


def test_checking_a_cache_file_keeps_the_locks_of_a_cache_this_process_has_open(tmp_path):
    """Closing any descriptor of a file drops every POSIX lock the process holds on it: a raw
    read of an open cache's header let another process take itself for the last connection and
    delete the write-ahead log under the open one (a shared benchmark cache was left "malformed").
    After the check, another process that opens and closes the cache must leave the log alone."""
    import subprocess
    import sys
    from pathlib import Path

    from realign.judges.base import JudgeItem, Verdict
    from realign.judges.cache import VerdictCache, check_cache_file

    path = tmp_path / "cache.sqlite"
    with VerdictCache(path, commit_every=1) as cache:
        cache.put("judge", "policy", JudgeItem("x", "y"), Verdict(True, 0.9, "ok"))
        check_cache_file(path)
        VerdictCache(path).close()  # a second cache on the same file in this process checks it too
        other = "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.execute('select count(*) from verdicts').fetchone(); db.close()"
        subprocess.run([sys.executable, "-c", other, str(path)], check=True)
        assert Path(f"{path}-wal").exists(), "another process checkpointed and deleted the log of an open cache"
        cache.put("judge", "policy", JudgeItem("x", "z"), Verdict(False, 0.1, "no"))
    with VerdictCache(path) as cache:
        assert len(cache.get_many("judge", "policy", [JudgeItem("x", "y"), JudgeItem("x", "z")])) == 2
