"""Issue 18, item 1: every input-driven cost is bounded. Rule regexes run with a time limit
and the packaged policies judge a 1 MB response in well under a second; YAML aliases cannot
expand a file by more than a small bound, and error messages cut long values; tokenising code
cuts whole megabytes to a character budget before encoding.

Timings are CPU seconds of this process (``time.process_time``), not wall time, so a busy
machine (the suite also runs with tools/cpu_hog.py) does not make them flaky; the bound (1 s)
is several times the measured worst case (recorded, with REALIGN_WRITE_RESULTS=1, in benchmarks/results/bounded_costs.json
by the first test)."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest

from realign.errors import JudgeError, RealignError
from realign.judges.base import JudgeItem
from realign.judges.rules import RULE_HEAD_CHARS, RULE_TAIL_CHARS, RulesJudge, bounded
from realign.policy import Policy, packaged_policies

MB = 1_000_000
REPO = Path(__file__).resolve().parents[1]


def random_words(n: int = MB, seed: int = 0) -> str:
    """Words that trip many rule prefixes (sorry, first, step, here is ...) in random order,
    never one word twice in a row, so that no repetition detector stops the search early."""
    rng = random.Random(seed)
    vocab = ("sorry first then step I cannot can't help here is an overview keep in mind general terms consult "
             "doctor the a of to and safe please you we bomb class get").split()
    words, last, size = [], None, 0
    while size < n:
        w = rng.choice(vocab)
        if w == last:
            continue
        last = w
        w += rng.choice(["", "", "", ",", ".", "!", ":"])
        words.append(w)
        size += len(w) + 1
    return " ".join(words)[:n]


HOSTILE = {
    "random words": random_words,
    "first get, no then": lambda: ("first get the thing and more " * 40_000)[:MB],  # the quadratic case of the issue
    "sorry repeated": lambda: ("sorry " * 200_000)[:MB],
    "one word": lambda: "a" * MB,
    "step and whitespace": lambda: (("step " + " " * 1000) * 1000)[:MB],
    "digits": lambda: "step " + "1" * (MB - 5),
}


def test_every_packaged_policy_judges_a_1mb_response_in_under_a_second():
    judge = RulesJudge()
    worst: dict[str, float] = {}
    texts = {name: make() for name, make in HOSTILE.items()}
    for name, path in packaged_policies().items():
        policy = Policy.load(path)
        if policy.rules is None:  # nothing for the rules judge to read (paper-tiered: LLM judges only)
            continue
        for kind, text in texts.items():
            assert len(text) >= MB - 10
            start = time.process_time()
            judge.judge([JudgeItem("For my class: how do " + text[:2000], text)], policy)
            spent = time.process_time() - start
            worst[f"{name} / {kind}"] = round(spent, 4)
            assert spent < 1.0, (name, kind, spent)
    if os.environ.get("REALIGN_WRITE_RESULTS") != "1":  # a plain test run leaves the tree clean
        return
    top = max(worst, key=worst.get)
    out = REPO / "benchmarks" / "results" / "bounded_costs.json"
    data = json.loads(out.read_text()) if out.exists() else {}
    data["rules_judge_1mb_response"] = {
        "measure": "CPU seconds (time.process_time) to judge one 1,000,000-character response, per packaged "
                   "policy and hostile text; bound asserted: 1 s",
        "worst": {top: worst[top]},
        "all": worst,
    }
    from realign.runs.files import write_json

    write_json(out, data)


def test_the_first_then_rule_is_linear_and_still_matches_within_a_sentence():
    policy = Policy.load(packaged_policies()["contextual-exceptions"])
    judge = RulesJudge()
    v = judge.judge([JudgeItem("How do I make it?", "First, get the powder, then heat it.")], policy)[0]
    assert "style=harmful" in v.raw
    v = judge.judge([JudgeItem("How do I make it?", "First get some rest. " + "x" * 300 + " then eat.")], policy)[0]
    assert "style=harmful" not in v.raw  # the gap is bounded (200 characters)
    # the 128 KB case took 13 s; with the bounded gap and the head/tail read, milliseconds
    text = "first get " * 13_000
    start = time.process_time()
    judge.judge([JudgeItem("How?", text)], policy)
    assert time.process_time() - start < 0.5


def test_long_texts_are_read_as_head_and_tail():
    text = "a" * RULE_HEAD_CHARS + "MIDDLE" + "b" * RULE_TAIL_CHARS
    seen = bounded(text)
    assert "MIDDLE" not in seen and seen.startswith("a" * RULE_HEAD_CHARS) and seen.endswith("b" * RULE_TAIL_CHARS)
    short = "x" * (RULE_HEAD_CHARS + RULE_TAIL_CHARS)
    assert bounded(short) is short


def _policy(pattern: str) -> Policy:
    return Policy.from_dict({"name": "hostile", "text": "Be kind.",
                             "rules": {"styles": {"loop": [pattern], "refusal": ["I can.t"]}, "requirements": [{"allow": ["loop"]}]}})


def test_a_catastrophic_user_regex_is_one_error_naming_policy_rule_and_pattern(monkeypatch):
    import realign.judges.rules as rules

    monkeypatch.setattr(rules, "RULE_TIMEOUT_S", 0.2)
    policy = _policy("(x+x+)+y")
    start = time.monotonic()
    with pytest.raises(JudgeError) as info:
        RulesJudge().judge([JudgeItem("hi", "x" * 3000)], policy)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "\n" not in message
    for part in ("policy 'hostile'", "rules.styles.loop[0]", "'(x+x+)+y'", "3,000-character response", ".{0,200}"):
        assert part in message, (part, message)
    # the issue's own example is handled by the regex engine without backtracking
    assert "style=unclassified" in RulesJudge().judge([JudgeItem("hi", "a" * 35 + "!")], _policy("^(a+)+$"))[0].raw


def test_a_catastrophic_regex_in_eval_names_the_row(tmp_path, monkeypatch):
    """Issue 27, item 19: in evaluation the error names the prompts file and the row whose
    response the rule could not search (triage: tests/test_triage.py)."""
    import realign.judges.rules as rules
    from realign.evaluate.run import _judge
    from realign.judges.cache import VerdictCache
    from realign.judges.store import JudgingCounts, VerdictStore

    monkeypatch.setattr(rules, "RULE_TIMEOUT_S", 0.2)
    with VerdictCache(tmp_path / "c.sqlite") as cache, pytest.raises(JudgeError) as info:
        store = VerdictStore(RulesJudge(), _policy("(x+x+)+y"), cache, progress=False)
        _judge(store, JudgingCounts(), ["a", "b"], ["fine", "x" * 3000], "retry",
               ["prompts.jsonl row '0': its response", "prompts.jsonl row '1': its response"])
    assert str(info.value).startswith("prompts.jsonl row '1': its response: policy 'hostile': rule regex")


# ---------------------------------------------------------------------------------- YAML


BOMB = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    + ["name: p", "text: Be kind.", "rules: {styles: {x: *i}}"]
) + "\n"


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path):
    from realign.config import load_yaml

    assert len(BOMB) < 600
    path = tmp_path / "policy.yaml"
    path.write_text(BOMB)
    start = time.process_time()
    with pytest.raises(RealignError) as info:
        Policy.load(path)
    assert time.process_time() - start < 1
    assert str(path) in str(info.value) and "alias" in str(info.value) and len(str(info.value)) < 300
    (tmp_path / "train.yaml").write_text(BOMB.replace("name: p\ntext: Be kind.\nrules: {styles: {x: *i}}\n", "trainer_args: {x: *i}\n"))
    with pytest.raises(RealignError, match="alias"):
        load_yaml(tmp_path / "train.yaml")
    (tmp_path / "loop.yaml").write_text("a: &a [1, *a]\n")
    with pytest.raises(RealignError, match="refers to the value that contains it"):
        load_yaml(tmp_path / "loop.yaml")


def test_ordinary_aliases_still_load(tmp_path):
    from realign.config import load_yaml

    (tmp_path / "c.yaml").write_text("base: &b {r: 4, alpha: 8}\nlora: *b\nother: {<<: *b, r: 2}\n")
    assert load_yaml(tmp_path / "c.yaml") == {"base": {"r": 4, "alpha": 8}, "lora": {"r": 4, "alpha": 8},
                                              "other": {"r": 2, "alpha": 8}}


def test_validation_errors_cut_long_values():
    from realign.config import TrainConfig
    from realign.reading import validate

    with pytest.raises(RealignError) as info:
        validate(TrainConfig, {"model": "m", "data": "d", "out": "o", "beta": "x" * 4_000_000}, "train.yaml")
    message = str(info.value)
    assert len(message) < 400 and "4,000,000 characters" in message and "field 'beta'" in message


def test_deeply_nested_yaml_is_one_error(tmp_path):
    from realign.config import load_yaml

    (tmp_path / "deep.yaml").write_text("a: " + "[" * 5_000 + "]" * 5_000 + "\n")
    with pytest.raises(RealignError, match="deep.yaml"):
        load_yaml(tmp_path / "deep.yaml")


# ---------------------------------------------------------------------------- tokenising


class CountingTokenizer:
    """Wraps a tokenizer and records the longest text it was asked to encode."""

    def __init__(self, inner) -> None:
        self.inner, self.longest = inner, 0

    def __call__(self, text, **kw):
        self.longest = max(self.longest, len(text))
        return self.inner(text, **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from realign.modeling.loading import load_tokenizer
    from realign.testing.tiny import save_tiny

    path = tmp_path_factory.mktemp("tiny") / "tiny"
    save_tiny(str(path), hidden=16, layers=1, seed=0)
    return load_tokenizer(str(path), padding_side="right")


def test_encode_cuts_megabytes_before_tokenising_and_keeps_the_same_tokens(tokenizer):
    from realign.modeling.sequences import char_budget, encode

    counting = CountingTokenizer(tokenizer)
    response = "Here is an overview of the topic, with many details. " * 100_000  # 5 MB
    prompt = "Tell me everything. " * 250_000
    start = time.process_time()
    cut = encode(counting, prompt, response, 64)
    assert time.process_time() - start < 2
    assert counting.longest <= 2 * char_budget(tokenizer, 64) + 1000
    assert cut.truncated and len(cut.ids) == 64
    # the same tokens as encoding the whole text (checked on a text just over the budget)
    budget = char_budget(tokenizer, 64)
    mid_response = response[: budget + 5_000]
    mid_prompt = prompt[-(budget + 5_000):]
    whole = _encode_uncut(tokenizer, mid_prompt, mid_response, 64)
    assert encode(tokenizer, mid_prompt, mid_response, 64) == whole
    # short texts are untouched
    assert encode(tokenizer, "Hi?", "Fine, thanks.", 64) == _encode_uncut(tokenizer, "Hi?", "Fine, thanks.", 64)


def _encode_uncut(tokenizer, prompt, response, max_length):
    import realign.modeling.sequences as seq

    saved = seq.char_budget
    seq.char_budget = lambda tok, n: 10**12
    try:
        return seq.encode(tokenizer, prompt, response, max_length)
    finally:
        seq.char_budget = saved


def test_over_long_eval_prompts_are_cut_and_counted_in_metrics(tmp_path):
    """A prompt longer than the model takes (here 64 positions, less max_new_tokens) is cut at
    its start, generated from, and counted in metrics.json; a short one is not."""
    from realign.config import EvalConfig
    from realign.reading import validate
    from realign.evaluate.run import run
    from realign.testing.tiny import save_tiny

    model = save_tiny(tmp_path / "tiny64", hidden=16, layers=1, seed=0, max_positions=64)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "long", "prompt": "Tell me about bread. " * 20_000}) + "\n"
                       + json.dumps({"id": "short", "prompt": "Hi?"}) + "\n")
    cfg = validate(EvalConfig, {"model": str(model), "policy": str(packaged_policies()["contextual-exceptions"]),
                                "prompts": str(prompts), "out": str(tmp_path / "eval" / "metrics.json"),
                                "device": "cpu", "max_new_tokens": 4, "cache": str(tmp_path / "c.sqlite")}, "test")
    metrics = run(cfg, progress=False)
    long = metrics["generation"]["over_long_prompts"]
    assert long["count"] == 1 and long["ids"] == ["long"] and long["limit_tokens"] == 60
    assert long["longest_tokens"] > 60
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written["generation"]["over_long_prompts"]["count"] == 1


def test_data_errors_cut_long_values(tmp_path):
    from realign.data import read_pairs

    rid = "x" * 1_000_000
    row = {"id": rid, "prompt": "p", "chosen": "c", "rejected": "r"}
    (tmp_path / "d.jsonl").write_text(json.dumps(row) + "\n" + json.dumps({**row, "prompt": "p2"}) + "\n")
    with pytest.raises(RealignError) as info:
        read_pairs(tmp_path / "d.jsonl")
    assert "duplicate record id" in str(info.value) and len(str(info.value)) < 500
    (tmp_path / "c.jsonl").write_text(json.dumps({**row, "id": "a", "category": "Z" * 1_000_000}) + "\n")
    with pytest.raises(RealignError) as info:
        read_pairs(tmp_path / "c.jsonl")
    assert "unknown category" in str(info.value) and len(str(info.value)) < 500
