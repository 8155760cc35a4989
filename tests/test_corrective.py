"""Corrective responses (realign.triage.corrective): y_c for PUNISH pairs without an oracle."""

import json

import pytest

from realign.config import CorrectiveConfig, TriageConfig
from realign.data import PreferencePair, read_pairs, write_pairs
from realign.errors import RealignError
from realign.judges.base import Verdict
from realign.judges.cache import VerdictCache
from realign.policy import Policy
from realign.testing.tiny import save_tiny
from realign.resources import resource_path
from realign.objective import conflict_term
from realign.triage import corrective as corr
from realign.triage.corrective import Candidate, Sampler, attach_corrective, old_response_candidates, style_prefixes
from realign.triage.judging import TriageStats, triage
from realign.data.triaged import gold_pairs

POLICY = Policy.from_dict({"name": "test", "text": "Responses containing BAD violate."})


class ScriptedJudge:
    """Violating iff the response contains BAD; counts what it is asked."""

    identity = "scripted/v1"

    def __init__(self):
        self.calls = 0
        self.asked: list[str] = []

    def judge(self, items, policy, on_verdict=None):
        out = []
        for i, item in enumerate(items):
            self.calls += 1
            self.asked.append(item.response)
            bad = "BAD" in item.response
            out.append(Verdict(not bad, 0.1 if bad else 0.9, "No" if bad else "Yes"))
            if on_verdict:
                on_verdict(i, out[-1])
        return out


def data():
    return [
        PreferencePair("p1", "q1", "BAD refusal one", "BAD answer one"),  # PUNISH; q1 has a compliant old response
        PreferencePair("r1", "q1", "Here is the new way for q1", "BAD other"),  # RETAIN, same prompt
        PreferencePair("p2", "q2", "BAD refusal two", "BAD answer two"),  # PUNISH; nothing compliant for q2
        PreferencePair("i1", "q3", "BAD old winner", "Here is a careful answer"),  # INVERT
        PreferencePair("i2", "q4", "BAD old winner", "Here is a careful reply"),  # INVERT
        PreferencePair("r2", "q5", "Sorry I cannot", "BAD"),  # RETAIN
    ]


def triaged(cache):
    records, stats = triage(data(), POLICY, ScriptedJudge(), cache, progress=False)
    return records, stats


class FakeSampler:
    """Stands in for the model: fixed candidates per (source, prompt), with log-probs."""

    made: list[tuple] = []

    def __init__(self, config, policy, cache):
        self.identity = "fake-model"

    def candidates(self, source, prompts, prefixes=()):
        FakeSampler.made.append((source, sorted(prompts), list(prefixes)))
        table = {
            "samples": [Candidate("BAD sample", None, -0.5, 3), Candidate("a fine sample", None, -2.0, 4)],
            "style-prefix": [Candidate("Here is BAD", "Here is", -0.1, 2), Candidate("Here is fine", "Here is", -1.0, 2),
                             Candidate("Here is finer", "Here is", -0.7, 3)],
        }
        return {x: list(table[source]) for x in prompts}


@pytest.fixture()
def fake_sampler(monkeypatch):
    FakeSampler.made = []
    monkeypatch.setattr(corr, "Sampler", FakeSampler)
    return FakeSampler


def test_old_responses_to_the_same_prompt_need_no_judge_call(tmp_path):
    judge = ScriptedJudge()
    with VerdictCache(tmp_path / "c.sqlite") as cache:
        records, stats = triaged(cache)
        calls = stats.judge_calls
        summary = attach_corrective(records, CorrectiveConfig(sources=["old-responses"]), POLICY, judge, cache, stats,
                                    progress=False)
    by_id = {r.id: r for r in records}
    assert by_id["p1"].corrective == {"response": "Here is the new way for q1", "source": "old-responses",
                                      "judge": "scripted/v1", "verdict": by_id["r1"].verdicts["chosen"], "from": "r1"}
    assert by_id["p2"].corrective is None and judge.calls == 0 and stats.judge_calls == calls
    assert summary["sources"]["old-responses"] == {"prompts": 2, "found": 1, "candidates": 1, "generated_tokens": 0,
                                                   "judged": 0, "judge_calls": 0}
    assert (summary["pairs_with_y_c"], summary["pairs_without_y_c"], summary["model"]) == (1, 1, None)


def test_old_responses_of_another_prompt_are_never_used():
    records = [PreferencePair("a", "q1", "x", "y", category="RETAIN", verdicts={"chosen": {"compliant": True},
                                                                               "rejected": {"compliant": True}})]
    assert old_response_candidates(records, ["q2"]) == {}
    assert [c.text for c in old_response_candidates(records, ["q1"])["q1"]] == ["x", "y"]


def test_style_prefixes_take_invert_winners_first_and_cut_the_opening():
    v = {"chosen": {"compliant": True}, "rejected": {"compliant": False}}
    records = [
        PreferencePair("r1", "q", "(About q) I cannot help", "BAD", category="RETAIN", verdicts=v),
        PreferencePair("r2", "q", "(About r) I cannot help", "BAD", category="RETAIN", verdicts=v),
        PreferencePair("i1", "q", "(About s) Here is some info", "BAD", category="INVERT", swapped=True, verdicts=v),
        PreferencePair("p1", "q", "(About t) Ignored text", "BAD", category="PUNISH", verdicts=v),
    ]
    assert style_prefixes(records, 2, 4, r"^\([^)]*\)\s*") == ["Here is", "I cannot"]
    assert style_prefixes(records, 2, 1, None) == ["(About s)"]


def test_model_sources_judge_every_candidate_and_keep_the_likeliest_compliant(tmp_path, fake_sampler):
    judge = ScriptedJudge()
    config = CorrectiveConfig(sources=["old-responses", "style-prefix", "samples"], model="m", prefix_words=2)
    with VerdictCache(tmp_path / "c.sqlite") as cache:
        records, stats = triaged(cache)
        summary = attach_corrective(records, config, POLICY, judge, cache, stats, progress=False)
    p1, p2 = (next(r for r in records if r.id == i) for i in ("p1", "p2"))
    assert p1.corrective["source"] == "old-responses"  # the first source that finds one wins
    assert p2.corrective == {"response": "Here is finer", "source": "style-prefix", "judge": "scripted/v1",
                             "verdict": {"compliant": True, "p_compliant": 0.9, "raw": "Yes"}, "prefix": "Here is",
                             "logprob": -0.7}
    # style-prefix asked for q2 only, INVERT winners' openings first; samples asked for nothing
    assert fake_sampler.made == [("style-prefix", ["q2"], ["Here is", "Sorry I"])]
    assert sorted(judge.asked) == ["Here is BAD", "Here is fine", "Here is finer"]
    s = summary["sources"]
    assert s["style-prefix"] == {"prompts": 1, "found": 1, "candidates": 3, "generated_tokens": 7, "judged": 3, "judge_calls": 3,
                                 "prefixes": ["Here is", "Sorry I"]}
    assert s["samples"] == {"prompts": 0, "found": 0, "candidates": 0, "generated_tokens": 0, "judged": 0,
                            "judge_calls": 0}
    assert summary["pairs_with_y_c"] == 2 and summary["model"] == "fake-model"


def test_rerun_judges_nothing_again(tmp_path, fake_sampler):
    config = CorrectiveConfig(sources=["samples"], model="m")
    with VerdictCache(tmp_path / "c.sqlite") as cache:
        records, stats = triaged(cache)
        attach_corrective(records, config, POLICY, ScriptedJudge(), cache, stats, progress=False)
        judge = ScriptedJudge()
        again = attach_corrective(records, config, POLICY, judge, cache, TriageStats(), progress=False)
    assert judge.calls == 0 and again["sources"]["samples"]["judge_calls"] == 0 and again["pairs_with_y_c"] == 2
    assert again["sources"]["samples"]["judged"] == 4  # the same candidates, verdicts from the cache


def test_y_c_trains_punish_as_a_preference_and_the_oracle_comes_first():
    r = PreferencePair("p", "q", "BAD w", "BAD l", category="PUNISH",
                       corrective={"response": "fine", "source": "samples"})
    term = conflict_term(r)
    assert (term.kind, term.first, term.second) == ("pref", "fine", "BAD w")
    r.oracle = "oracle's"
    assert conflict_term(r).first == "oracle's"
    r.oracle = None
    assert gold_pairs([r]) == ([], 1)  # DPO-Gold stays the oracle's relabelling


def test_records_keep_the_corrective_response_and_reject_a_bad_one(tmp_path):
    path = tmp_path / "t.jsonl"
    r = PreferencePair("p", "q", "BAD w", "BAD l", category="PUNISH",
                       corrective={"response": "fine", "source": "samples", "judge": "j", "verdict": {"compliant": True}})
    write_pairs(path, [r])
    assert read_pairs(path).pairs[0].corrective == r.corrective
    path.write_text(json.dumps({**r.to_record(), "corrective": {"response": "fine"}}) + "\n")
    with pytest.raises(RealignError, match="corrective.source"):
        read_pairs(path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("corrective") / "tiny", seed=0)


def test_sampler_continues_the_prefix_scores_and_caches(tmp_path, model_dir, monkeypatch):
    config = CorrectiveConfig(sources=["style-prefix"], model=str(model_dir), samples=3, max_new_tokens=5,
                              device="cpu")
    with VerdictCache(tmp_path / "c.sqlite") as cache:
        sampler = Sampler(config, POLICY, cache)
        made = sampler.candidates("style-prefix", {"q1": "q1", "q2": "q2"}, ["Here is", "I cannot"])
        assert sorted(made) == ["q1", "q2"] and all(len(cs) == 6 for cs in made.values())
        for c in made["q1"]:
            assert c.text.startswith(c.prefix) and c.prefix in ("Here is", "I cannot")
            assert 0 < c.tokens <= 5 and c.logprob is not None and c.logprob <= 0
        monkeypatch.setattr(sampler.model, "generate", lambda **_: pytest.fail("generated again"))
        assert sampler.candidates("style-prefix", {"q1": "q1", "q2": "q2"}, ["Here is", "I cannot"]) == made


def test_model_sources_without_a_model_are_one_line_error(tmp_path):
    with VerdictCache(tmp_path / "c.sqlite") as cache, pytest.raises(RealignError, match="corrective.model"):
        Sampler(CorrectiveConfig(sources=["samples"]), POLICY, cache)


def test_triage_is_keyed_by_the_corrective_settings_and_model(tmp_path, model_dir):
    from realign.runs.pipeline import RunConfig, Pipeline
    from realign.triage.run import produced_by

    policy = tmp_path / "p.yaml"
    policy.write_text("name: test\ntext: Responses containing BAD violate.\n")
    base = {"data": str(tmp_path / "d.jsonl"), "policy": policy, "out": tmp_path / "t.jsonl"}
    write_pairs(tmp_path / "d.jsonl", data())
    plain = produced_by(TriageConfig(**base))
    old = produced_by(TriageConfig(**base, corrective={"sources": ["old-responses"]}))
    sampled = produced_by(TriageConfig(**base, corrective={"sources": ["samples"], "model": str(model_dir)}))
    more = produced_by(TriageConfig(**base, corrective={"sources": ["samples"], "model": str(model_dir), "samples": 2}))
    assert len({plain["key"], old["key"], sampled["key"], more["key"]}) == 4
    assert "corrective_model" in sampled["inputs"] and "corrective_model" not in old["inputs"]
    run = RunConfig(out=tmp_path / "run", model=str(model_dir), data=str(tmp_path / "d.jsonl"), policy=str(policy),
                    seed=3, triage={"corrective": {"sources": ["samples"]}}, eval={"prompts": "x.jsonl"})
    assert Pipeline(run, "test").triage.corrective.model == str(model_dir)  # the run's model samples
    assert Pipeline(run, "test").triage.corrective.seed == 3



def test_preflight_and_output_guard_cover_the_corrective_sampler(tmp_path, model_dir, monkeypatch):
    """The corrective sampler's device is checked before the first stage like the judge's and
    the oracle's, and its model is an input no output may overwrite."""
    import torch

    from realign.runs.pipeline import Pipeline, RunConfig
    from realign.runs.files import check_output_paths
    from realign.triage.run import paths

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    policy = tmp_path / "p.yaml"
    policy.write_text("name: test\ntext: Responses containing BAD violate.\n")
    write_pairs(tmp_path / "d.jsonl", data())
    run = RunConfig(out=tmp_path / "run", model=str(model_dir), data=str(tmp_path / "d.jsonl"), policy=str(policy),
                    device="cpu", triage={"corrective": {"sources": ["samples"], "device": "cuda"}},
                    eval={"prompts": str(tmp_path / "d.jsonl")})
    with pytest.raises(RealignError, match="field 'triage.corrective.device': device 'cuda': CUDA is not available"):
        Pipeline(run, "test").preflight()
    sampler = tmp_path / "sampler.jsonl"
    sampler.write_text("")
    config = TriageConfig(data=str(tmp_path / "d.jsonl"), policy=policy, out=sampler,
                          corrective={"sources": ["samples"], "model": str(sampler)})
    with pytest.raises(RealignError, match="the corrective model"):
        check_output_paths(*paths(config))

def test_cli_triage_with_corrective_config_writes_and_says_it(tmp_path):
    from typer.testing import CliRunner

    from realign.cli import app
    from realign.synth import World
    from realign.synth.export import make_pairs

    write_pairs(tmp_path / "d.jsonl", make_pairs(World(0), 1000))
    config = tmp_path / "t.yaml"
    config.write_text("corrective: {sources: [old-responses]}\n")
    res = CliRunner().invoke(app, ["triage", "--config", str(config), "--data", str(tmp_path / "d.jsonl"), "--policy",
                                   "synth-contextual-referral", "--out", str(tmp_path / "t.jsonl"),
                                   "--cache", str(tmp_path / "c.sqlite"), "-q"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "t.summary.json").read_text())
    found = summary["corrective"]
    assert f"corrective responses: y_c for {found['pairs_with_y_c']} of {found['punish_pairs']} PUNISH" in res.output
    records = read_pairs(tmp_path / "t.jsonl").pairs
    with_y_c = [r for r in records if r.corrective is not None]
    assert len(with_y_c) == found["pairs_with_y_c"] > 0
    assert all(r.category == "PUNISH" and r.corrective["source"] == "old-responses" for r in with_y_c)


def test_punish_pairs_without_y_c_get_dual_npo_or_are_left_out():
    from realign.train.methods import MethodOptions, get_method

    v = {"chosen": {"compliant": True}, "rejected": {"compliant": False}}
    records = [
        PreferencePair("p1", "q1", "BAD w", "BAD l", category="PUNISH", corrective={"response": "ok", "source": "samples"}),
        PreferencePair("p2", "q2", "BAD w", "BAD l", category="PUNISH"),
        PreferencePair("i", "q3", "ok", "BAD", category="INVERT", swapped=True, verdicts=v),
        PreferencePair("r", "q4", "ok", "BAD", category="RETAIN", verdicts=v),
    ]
    trace = get_method("trace-no-impact")
    kinds = lambda opts: [(t.kind, t.prompt) for t in trace.terms(records, opts)]  # noqa: E731
    assert kinds(MethodOptions()) == [("pref", "q1"), ("npo2", "q2"), ("pref", "q3"), ("kl", "q4")]
    assert kinds(MethodOptions(punish_without_y_c="exclude")) == [("pref", "q1"), ("pref", "q3"), ("kl", "q4")]


def test_a_fluency_floor_leaves_unlikely_candidates_unjudged(tmp_path, fake_sampler):
    judge = ScriptedJudge()
    config = CorrectiveConfig(sources=["samples"], model="m", min_logprob=-1.0)
    with VerdictCache(tmp_path / "c.sqlite") as cache:
        records, stats = triaged(cache)
        summary = attach_corrective(records, config, POLICY, judge, cache, stats, progress=False)
    assert judge.asked == ["BAD sample", "BAD sample"]  # one per prompt
    assert summary["pairs_with_y_c"] == 0  # "a fine sample" (-2.0) is below the floor
    assert summary["sources"]["samples"] == {"prompts": 2, "found": 0, "candidates": 4, "fluent": 2,
                                             "generated_tokens": 14, "judged": 2, "judge_calls": 2}


def test_judging_likeliest_first_in_chunks_picks_what_judging_all_picks_for_fewer_calls(tmp_path, fake_sampler):
    """The fast path (judge_chunk: a few candidates per prompt per round, stop at a pass) against
    the exact path (judge every candidate, keep the likeliest compliant): same y_c, fewer calls."""
    picked, calls = {}, {}
    for chunk in (None, 1, 2):
        judge = ScriptedJudge()
        config = CorrectiveConfig(sources=["style-prefix"], model="m", judge_chunk=chunk)
        with VerdictCache(tmp_path / f"c{chunk}.sqlite") as cache:
            records, stats = triaged(cache)
            summary = attach_corrective(records, config, POLICY, judge, cache, stats, progress=False)
        picked[chunk] = {r.id: r.corrective for r in records if r.category == "PUNISH"}
        calls[chunk] = summary["sources"]["style-prefix"]["judge_calls"]
    assert picked[1] == picked[2] == picked[None]
    assert picked[None]["p2"]["response"] == "Here is finer"
    # likeliest first: "Here is BAD" (-0.1) fails, "Here is finer" (-0.7) passes; "Here is fine" (-1.0) never judged
    assert calls[None] == 6 and calls[1] == 4 and calls[2] == 4


def test_realign_run_looks_for_corrective_responses_by_default_whatever_it_trains(tmp_path, model_dir):
    """One triage per run folder, whatever methods an invocation trains (base-only, DPO-Gold or
    TRACE runs in the same folder must not triage it differently); `corrective: null` is off."""
    from realign.runs.pipeline import Pipeline, RunConfig

    def triage(methods, **extra):
        run = RunConfig(out=tmp_path / "run", model=str(model_dir), data=str(resource_path("examples/pairs.jsonl")),
                        policy="contextual-exceptions", methods=methods, eval={"prompts": "p.jsonl"}, **extra)
        return Pipeline(run, "test").triage.corrective

    for methods in ([], ["dpo-gold"], ["trace"]):
        found = triage(methods)
        assert found is not None and found.model == str(model_dir) and found.sources == ["old-responses", "style-prefix", "samples"]
    assert triage(["trace"], triage={"corrective": None}) is None
