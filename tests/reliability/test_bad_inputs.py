"""Bad input corpus (issue 9, item 3), through the real CLI entry point (``realign.cli.main``
in a process of its own): every case ends with exit status 2 and exactly one line on stderr,
``error: ...``, naming the file and/or field (checked), no traceback, and the outputs that
existed before the run (sentinel files) are untouched. Very long texts are not errors:
truncation must be reported in the score and train summaries.

The corpus spans every stage (triage, score, train, eval) and every input kind: data records,
policy YAML, judge YAML, stage config YAML, flags, model paths.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rel_helpers import record_results, triaged_rows, write_jsonl

MESSAGES: dict[str, str] = {}
SENTINEL = b"SENTINEL: an earlier run's output; must survive a failed run\n"


def rec(**kw) -> str:
    base = {"prompt": "How are you?", "chosen": "Fine, thanks.", "rejected": "Go away."}
    base.update(kw)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


def triaged(**kw) -> str:
    row = triaged_rows(1)[0]
    row.update(kw)
    return json.dumps(row)


@dataclass
class Case:
    name: str
    stage: str  # triage | score | train | eval
    expect: list[str]  # substrings of the error line ({tmp} is the case folder)
    files: dict[str, str | bytes] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # replace / extend the stage's defaults


def lines(*rows: str | bytes) -> bytes:
    return b"".join((r if isinstance(r, bytes) else r.encode()) + b"\n" for r in rows)


POLICY_RULES = "rules:\n  styles:\n    helpful: ['overview']\n"
CONV = {"chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}

CASES = [
    # ---- data records (triage) -------------------------------------------------------------
    Case("malformed-json", "triage", ["{tmp}/data.jsonl:2", "invalid JSON"], {"data.jsonl": lines(rec(id="ok"), '{"prompt": "x", "chosen": ')}),
    Case("missing-field", "triage", ["data.jsonl:1", "field 'rejected'", "missing"], {"data.jsonl": lines(json.dumps({"prompt": "p", "chosen": "c"}))}),
    Case("missing-prompt", "triage", ["data.jsonl:1", "field 'prompt'", "missing"], {"data.jsonl": lines(json.dumps({"chosen": "c", "rejected": "r"}))}),
    Case("wrong-type", "triage", ["data.jsonl:1", "field 'chosen'", "expected a string, got int"], {"data.jsonl": lines(rec(chosen=3))}),
    Case("wrong-type-list-in-standard", "triage", ["data.jsonl:1", "field 'rejected'", "list of messages"], {"data.jsonl": lines(rec(rejected=[{"role": "assistant", "content": "x"}]))}),
    Case("empty-text", "triage", ["data.jsonl:1", "field 'rejected'", "is empty"], {"data.jsonl": lines(rec(rejected=""))}),
    Case("whitespace-only-text", "triage", ["data.jsonl:1", "field 'prompt'", "whitespace only"], {"data.jsonl": lines(rec(prompt=" \n\t "))}),
    Case("nul-escape", "triage", ["data.jsonl:1", "field 'chosen'", "NUL byte"], {"data.jsonl": lines(rec(chosen="a\u0000b"))}),
    Case("raw-nul-byte", "triage", ["data.jsonl:1", "invalid JSON"], {"data.jsonl": lines(b'{"prompt": "a\x00b", "chosen": "c", "rejected": "r"}')}),
    Case("invalid-utf8", "triage", ["data.jsonl:2", "not valid UTF-8"], {"data.jsonl": lines(rec(id="ok"), b'{"prompt": "\xff\xfe", "chosen": "c", "rejected": "r"}')}),
    Case("duplicate-id", "triage", ["data.jsonl:2", "field 'id'", "duplicate record id 'a'"], {"data.jsonl": lines(rec(id="a"), rec(id="a", prompt="Other?"))}),
    Case("same-pair-other-content", "triage", ["data.jsonl:3", "field 'meta.note'", "the same prompt and responses as line 1"], {"data.jsonl": lines(rec(note="a"), rec(prompt="Other?"), rec(note="b"))}),
    Case("unknown-category", "triage", ["data.jsonl:1", "field 'category'", "unknown category 'FLIP'"], {"data.jsonl": lines(rec(category="FLIP"))}),
    Case("bad-role", "triage", ["data.jsonl:1", "field 'prompt[0].role'", "unknown role 'robot'"], {"data.jsonl": lines(json.dumps({"prompt": [{"role": "robot", "content": "x"}], **CONV}))}),
    Case("json-not-array", "triage", ["{tmp}/data.json", "must hold an array"], {"data.json": json.dumps({"rows": []})}, ["--data", "{tmp}/data.json"]),
    Case("json-array-missing-field", "triage", ["data.json [record 1]", "field 'chosen'", "missing"], {"data.json": json.dumps([json.loads(rec()), {"prompt": "p", "rejected": "r"}])}, ["--data", "{tmp}/data.json"]),
    Case("data-file-missing", "triage", ["{tmp}/nope.jsonl", "file not found"], {}, ["--data", "{tmp}/nope.jsonl"]),
    Case("empty-data-file", "triage", ["data.jsonl", "no records"], {"data.jsonl": "\n\n"}),
    Case("triage-config-extra-field", "triage", ["{tmp}/triage.yaml", "field 'skip_invalids'", "Extra inputs"], {"triage.yaml": "skip_invalids: true\n"}, ["--config", "{tmp}/triage.yaml"]),
    # ---- policy YAML -----------------------------------------------------------------------
    Case("policy-missing-file", "triage", ["{tmp}/nope.yaml", "policy file not found"], {}, ["--policy", "{tmp}/nope.yaml"]),
    Case("policy-invalid-yaml", "triage", ["{tmp}/policy.yaml:2", "invalid YAML"], {"policy.yaml": "name: p\ntext: a: b\n"}, ["--policy", "{tmp}/policy.yaml"]),
    Case("policy-missing-text", "triage", ["policy.yaml", "field 'text'", "Field required"], {"policy.yaml": "name: p\n"}, ["--policy", "{tmp}/policy.yaml"]),
    Case("policy-empty-text", "triage", ["policy.yaml", "field 'text'", "must not be empty"], {"policy.yaml": "name: p\ntext: '   '\n"}, ["--policy", "{tmp}/policy.yaml"]),
    Case("policy-extra-field", "triage", ["policy.yaml", "field 'colour'", "Extra inputs"], {"policy.yaml": "name: p\ntext: Be kind.\ncolour: red\n"}, ["--policy", "{tmp}/policy.yaml"]),
    Case("policy-bad-regex", "triage", ["policy.yaml", "rules.styles.helpful[0]", "invalid regular expression"], {"policy.yaml": "name: p\ntext: Be kind.\nrules:\n  styles:\n    helpful: ['(unclosed']\n"}, ["--policy", "{tmp}/policy.yaml"]),
    Case("policy-unknown-style", "triage", ["policy.yaml", "rules.requirements[0].allow", "unknown style 'polite'"], {"policy.yaml": "name: p\ntext: Be kind.\n" + POLICY_RULES + "  requirements:\n    - allow: [polite]\n"}, ["--policy", "{tmp}/policy.yaml"]),
    Case("policy-not-a-mapping", "triage", ["policy.yaml", "must be a YAML mapping"], {"policy.yaml": "- name\n- text\n"}, ["--policy", "{tmp}/policy.yaml"]),
    Case("policy-invalid-utf8", "triage", ["policy.yaml", "not valid UTF-8"], {"policy.yaml": b"name: p\ntext: caf\xe9\n"}, ["--policy", "{tmp}/policy.yaml"]),
    Case("policy-without-rules-for-rules-judge", "triage", ["policy 'p'", "no 'rules' section"], {"policy.yaml": "name: p\ntext: Be kind.\n"}, ["--policy", "{tmp}/policy.yaml"]),
    # ---- judge YAML and flags ----------------------------------------------------------------
    Case("judge-unknown-backend", "triage", ["field 'judge.backend'", "expected rules, openai, hf", "'gpt'"], {"judge.yaml": "backend: gpt\n"}, ["--judge", "{tmp}/judge.yaml"]),
    Case("judge-extra-field", "triage", ["field 'judge.temprature'", "Extra inputs"], {"judge.yaml": "backend: openai\ntemprature: 0\n"}, ["--judge", "{tmp}/judge.yaml"]),
    Case("judge-concurrency-zero", "triage", ["field 'judge.concurrency'", "greater than or equal to 1"], {"judge.yaml": "backend: openai\nmodel: m\nconcurrency: 0\n"}, ["--judge", "{tmp}/judge.yaml"]),
    Case("judge-invalid-yaml", "triage", ["{tmp}/judge.yaml:2", "invalid YAML"], {"judge.yaml": "backend: openai\nmodel: m: n\n"}, ["--judge", "{tmp}/judge.yaml"]),
    Case("judge-openai-without-model", "triage", ["judge", "'model' is required"], {"judge.yaml": "backend: openai\nbase_url: http://127.0.0.1:9/v1\n"}, ["--judge", "{tmp}/judge.yaml"]),
    Case("judge-key-file-missing", "triage", ["{tmp}/no-key.txt", "cannot read the judge API key file"], {"judge.yaml": "backend: openai\nmodel: m\napi_key_file: {tmp}/no-key.txt\n"}, ["--judge", "{tmp}/judge.yaml"]),
    Case("judge-flag-unknown", "triage", ["--judge", "expected rules, openai, hf or a judge .yaml file", "'gpt4'"], {}, ["--judge", "gpt4"]),
    Case("judge-unparseable-rule", "triage", ["field 'judge.on_unparseable'", "'sometimes'"], {}, ["--on-unparseable", "sometimes"]),
    # ---- score (Stage 2) -------------------------------------------------------------------
    Case("score-gold-size-too-small", "score", ["field 'gold_size'", "greater than or equal to 3"], {}, ["--gold-size", "2"]),
    Case("score-max-length-too-small", "score", ["field 'max_length'", "greater than or equal to 8"], {}, ["--max-length", "4"]),
    Case("score-negative-damping", "score", ["field 'damping'", "greater than 0"], {}, ["--damping", "-1"]),
    Case("score-unknown-variant", "score", ["field 'variant'", "'paper', 'per-category' or 'cosine'"], {}, ["--variant", "fancy"]),
    Case("score-config-extra-field", "score", ["{tmp}/score.yaml", "field 'gold_sise'", "Extra inputs"], {"score.yaml": "gold_sise: 12\n"}, ["--config", "{tmp}/score.yaml"]),
    Case("score-missing-model-path", "score", ["{tmp}/no-model", "no such directory"], {}, ["--model", "{tmp}/no-model"]),
    Case("score-untriaged-data", "score", ["data.jsonl:1", "field 'category'", "run `realign triage` first"], {"data.jsonl": lines(rec())}),
    Case("score-unknown-category", "score", ["data.jsonl:1", "field 'category'", "unknown category 'FLIP'"], {"data.jsonl": lines(triaged(category="FLIP"))}),
    # ---- train (Stage 3) -------------------------------------------------------------------
    Case("train-nan-impact", "train", ["data.jsonl:1", "field 'impact'", "finite number >= 0", "nan"], {"data.jsonl": lines(triaged().replace('"impact": 0.5', '"impact": NaN'))}),
    Case("train-negative-impact", "train", ["data.jsonl:1", "field 'impact'", "finite number >= 0", "-0.5"], {"data.jsonl": lines(triaged(impact=-0.5))}),
    Case("train-infinite-impact", "train", ["data.jsonl:1", "field 'impact'", "finite number >= 0"], {"data.jsonl": lines(triaged().replace('"impact": 0.5', '"impact": Infinity'))}),
    Case("train-negative-beta", "train", ["field 'beta'", "greater than 0"], {}, ["--beta", "-1"]),
    Case("train-zero-learning-rate", "train", ["field 'learning_rate'", "greater than 0"], {}, ["--learning-rate", "0"]),
    Case("train-zero-batch-size", "train", ["field 'batch_size'", "greater than or equal to 1"], {}, ["--batch-size", "0"]),
    Case("train-lora-dropout-out-of-range", "train", ["{tmp}/train.yaml", "field 'lora.dropout'", "less than 1"], {"train.yaml": "lora:\n  dropout: 1.5\n"}, ["--config", "{tmp}/train.yaml"]),
    Case("train-unknown-method", "train", ["unknown method 'dpo2'"], {}, ["--method", "dpo2"]),
    Case("train-missing-model-path", "train", ["{tmp}/no-model", "no such directory"], {}, ["--model", "{tmp}/no-model"]),
    Case("train-model-path-is-a-file", "train", ["{tmp}/data.jsonl", "not a directory"], {}, ["--model", "{tmp}/data.jsonl"]),
    # ---- eval ------------------------------------------------------------------------------
    Case("eval-zero-max-new-tokens", "eval", ["field 'max_new_tokens'", "greater than or equal to 1"], {}, ["--max-new-tokens", "0"]),
    Case("eval-negative-temperature", "eval", ["field 'temperature'", "greater than or equal to 0"], {}, ["--temperature", "-0.5"]),
    Case("eval-prompt-missing", "eval", ["{tmp}/prompts.jsonl:2", "field 'prompt'", "missing"], {"prompts.jsonl": lines(json.dumps({"prompt": "Hi?"}), json.dumps({"slice": "x"}))}),
    Case("eval-missing-model-path", "eval", ["{tmp}/no-model", "no such directory"], {}, ["--model", "{tmp}/no-model"]),
    # ---- issue 18, item 2: these were tracebacks ---------------------------------------------
    Case("out-is-a-directory", "triage", ["--out {tmp}/out", "is a directory"], {}, ["--out", "{tmp}/out"]),
    Case("out-parent-is-a-file", "triage", ["--out {tmp}/out/triaged.jsonl/t.jsonl", "is not a directory"], {}, ["--out", "{tmp}/out/triaged.jsonl/t.jsonl"]),
    Case("cache-corrupted", "triage", ["{tmp}/bad.sqlite", "verdict cache"], {"bad.sqlite": b"SQLite format 2\x00 not a database" * 100}, ["--cache", "{tmp}/bad.sqlite"]),
    Case("json-nested-100000-deep", "triage", ["data.jsonl:1", "nested too deeply"], {"data.jsonl": lines('{"prompt": ' + "[" * 100_000 + "]" * 100_000 + ', "chosen": "a", "rejected": "b"}')}),
    Case("lone-surrogate-in-prompt", "triage", ["data.jsonl:1", "field 'prompt'", "lone surrogate"], {"data.jsonl": lines('{"prompt": "Hi \\ud800 there", "chosen": "c", "rejected": "r"}')}),
    Case("lone-surrogate-in-extra-field", "triage", ["data.jsonl:1", "field 'note'", "lone surrogate"], {"data.jsonl": lines('{"prompt": "Hi", "chosen": "c", "rejected": "r", "note": "\\udc00"}')}),
    Case("config-invalid-utf8", "triage", ["{tmp}/triage.yaml", "not valid UTF-8"], {"triage.yaml": b"split: caf\xe9\n"}, ["--config", "{tmp}/triage.yaml"]),
    Case("judge-yaml-invalid-utf8", "triage", ["{tmp}/judge.yaml", "not valid UTF-8"], {"judge.yaml": b"backend: caf\xe9\n"}, ["--judge", "{tmp}/judge.yaml"]),
    Case("config-is-a-directory", "triage", ["{tmp}/out", "is a directory"], {}, ["--config", "{tmp}/out"]),
    Case("policy-alias-bomb", "triage", ["{tmp}/policy.yaml", "alias"], {"policy.yaml": "\n".join(["a: &a [x, x, x, x, x, x, x, x, x]"] + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)] + ["name: p", "text: Be kind.", "rules: {styles: {x: *i}}"]) + "\n"}, ["--policy", "{tmp}/policy.yaml"]),
    Case("train-trainer-args-alias-bomb", "train", ["{tmp}/train.yaml", "alias"], {"train.yaml": "\n".join(["a: &a [x, x, x, x, x, x, x, x, x]"] + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)] + ["trainer_args: {x: *i}"]) + "\n"}, ["--config", "{tmp}/train.yaml"]),
    Case("train-trainer-args-unknown-field", "train", ["{tmp}/train.yaml", "field 'trainer_args'", "'bogus_field' is not a transformers.TrainingArguments field"], {"train.yaml": "trainer_args: {bogus_field: 1}\n"}, ["--config", "{tmp}/train.yaml"]),
    Case("train-trainer-args-set-by-realign", "train", ["{tmp}/train.yaml", "field 'trainer_args'", "'learning_rate' is set by realign", "'learning_rate'; set that instead"], {"train.yaml": "trainer_args: {learning_rate: 0.1}\n"}, ["--config", "{tmp}/train.yaml"]),
    Case("train-config-long-value-cut", "train", ["{tmp}/train.yaml", "field 'beta'", "(100,000 characters)"], {"train.yaml": "beta: " + "x" * 100_000 + "\n"}, ["--config", "{tmp}/train.yaml"]),
    Case("eval-expected-is-a-string", "eval", ["{tmp}/prompts.jsonl:1", "field 'expected'", "expected an object mapping policy names"], {"prompts.jsonl": lines(json.dumps({"prompt": "Hi?", "expected": "refusal"}))}),
    Case("eval-expected-unknown-policy", "eval", ["{tmp}/prompts.jsonl:1", "field 'expected'", "no entry for the policy being evaluated, 'contextual-exceptions'", "'contextual-exception'"], {"prompts.jsonl": lines(json.dumps({"prompt": "Hi?", "expected": {"contextual-exception": ["refusal"]}}))}),
    Case("eval-expected-style-is-a-string", "eval", ["{tmp}/prompts.jsonl:1", "field 'expected.contextual-exceptions'", "list of style names"], {"prompts.jsonl": lines(json.dumps({"prompt": "Hi?", "expected": {"contextual-exceptions": "refusal"}}))}),
    Case("eval-expected-unknown-style", "eval", ["{tmp}/prompts.jsonl:1", "field 'expected.contextual-exceptions[0]'", "unknown style 'refusl'"], {"prompts.jsonl": lines(json.dumps({"prompt": "Hi?", "expected": {"contextual-exceptions": ["refusl"]}}))}),
    Case("eval-slice-is-a-list", "eval", ["{tmp}/prompts.jsonl:1", "field 'slice'", "non-empty string"], {"prompts.jsonl": lines(json.dumps({"prompt": "Hi?", "slice": ["a"]}))}),
    # ---- issue 27: late failures, tracebacks and errors that lost their cause -------------------
    Case("train-trainer-args-eval-strategy", "train", ["{tmp}/train.yaml", "field 'trainer_args'", "'eval_strategy': 'steps' needs an evaluation set"], {"train.yaml": "trainer_args: {eval_strategy: steps}\n"}, ["--config", "{tmp}/train.yaml"]),
    Case("train-trainer-args-load-best-model", "train", ["{tmp}/train.yaml", "field 'trainer_args'", "'load_best_model_at_end': True needs an evaluation set"], {"train.yaml": "trainer_args: {load_best_model_at_end: true}\n"}, ["--config", "{tmp}/train.yaml"]),
    Case("train-max-steps-zero", "train", ["field 'max_steps'", "0 would train 1 step"], {}, ["--max-steps", "0"]),
    Case("train-max-steps-negative", "train", ["field 'max_steps'", "-5 would train for `epochs` instead"], {}, ["--max-steps", "-5"]),
    Case("train-impact-overflows-float32", "train", ["data.jsonl:1", "field 'impact'", "1e+308 overflows the float32 weight"], {"data.jsonl": lines(triaged(impact=1e308))}),
    Case("eval-empty-prompts-file", "eval", ["{tmp}/prompts.jsonl", "no records (nothing to evaluate on)"], {"prompts.jsonl": ""}),
    Case("policy-rules-that-cannot-decide", "triage", ["policy 'p'", "no requirements and no forbidden patterns", "default verdict ('compliant')"], {"policy.yaml": "name: p\ntext: Be kind.\nrules: {}\n"}, ["--policy", "{tmp}/policy.yaml"]),
    Case("cache-is-the-data-file", "triage", ["{tmp}/data.jsonl is not a verdict cache (an SQLite database)", "did you mean --data"], {}, ["--cache", "{tmp}/data.jsonl"]),
    Case("rule-regex-out-of-time-names-the-record", "triage", ["{tmp}/data.jsonl record 'slow' field 'rejected'", "rules.styles.loop[0]", "catastrophic backtracking"], {"data.jsonl": lines(rec(id="slow", rejected="x" * 3000)), "policy.yaml": "name: p\ntext: Be kind.\nrules:\n  styles: {loop: ['(x+x+)+y'], refusal: ['I cannot']}\n  requirements: [{allow: [loop]}]\n"}, ["--policy", "{tmp}/policy.yaml"]),
    # ---- issue 27: outputs in, or around, an input model folder --------------------------------
    Case("train-out-is-the-model", "train", ["--model {tmp}/model", "is --out {tmp}/model"], {"model/config.json": "{}"}, ["--model", "{tmp}/model/", "--out", "{tmp}/model"]),
    Case("train-out-inside-the-model", "train", ["--out {tmp}/model/run lies in --model {tmp}/model"], {"model/config.json": "{}"}, ["--model", "{tmp}/model", "--out", "{tmp}/model/run"]),
    Case("train-out-contains-the-model", "train", ["--model {tmp}/run/base lies in --out {tmp}/run"], {"run/base/config.json": "{}"}, ["--model", "{tmp}/run/base"]),
    Case("score-out-inside-the-model", "score", ["--out {tmp}/model/weighted.jsonl lies in --model {tmp}/model"], {"model/config.json": "{}"}, ["--model", "{tmp}/model", "--out", "{tmp}/model/weighted.jsonl"]),
    Case("eval-out-inside-the-model", "eval", ["--out {tmp}/model/metrics.json lies in --model {tmp}/model"], {"model/config.json": "{}"}, ["--model", "{tmp}/model", "--out", "{tmp}/model/metrics.json"]),
]

OUTPUTS = {  # outputs an earlier run left, relative to the case folder
    "triage": ["out/triaged.jsonl", "out/triaged.summary.json", "out/gold.jsonl"],
    "score": ["out/weighted.jsonl", "out/weighted.summary.json"],
    "train": ["run/train_summary.json", "run/adapter/adapter_model.safetensors"],
    "eval": ["out/metrics.json", "out/generations.jsonl"],
}


def default_argv(stage: str, model: Path) -> list[str]:
    if stage == "triage":
        return ["triage", "--data", "{tmp}/data.jsonl", "--policy", "contextual-exceptions", "--judge", "rules",
                "--out", "{tmp}/out/triaged.jsonl", "--gold-out", "{tmp}/out/gold.jsonl", "--cache", "{tmp}/cache.sqlite", "-q"]
    if stage == "score":
        return ["score", "--model", str(model), "--data", "{tmp}/data.jsonl", "--out", "{tmp}/out/weighted.jsonl",
                "--device", "cpu", "--gold-size", "6", "-q"]
    if stage == "train":
        return ["train", "--model", str(model), "--data", "{tmp}/data.jsonl", "--out", "{tmp}/run", "--device", "cpu",
                "--max-steps", "1", "-q"]
    return ["eval", "--model", str(model), "--policy", "contextual-exceptions", "--prompts", "{tmp}/prompts.jsonl",
            "--out", "{tmp}/out/metrics.json", "--device", "cpu", "--max-new-tokens", "4", "--cache", "{tmp}/cache.sqlite", "-q"]


def merged_argv(defaults: list[str], extra: list[str]) -> list[str]:
    """The stage's default arguments with ``extra`` flags replacing same-named ones."""
    argv = list(defaults)
    i = 0
    while i < len(extra):
        flag = extra[i]
        value = extra[i + 1] if i + 1 < len(extra) and not extra[i + 1].startswith("--") else None
        if flag in argv:
            at = argv.index(flag)
            if value is not None:
                argv[at + 1] = value
        else:
            argv[-1:-1] = [flag] + ([value] if value is not None else [])
        i += 2 if value is not None else 1
    return argv


def fill(text: str, tmp: Path) -> str:
    return text.replace("{tmp}", str(tmp))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_clear_line(case, zygote, tiny_model, tmp_path, base_env):
    tmp = tmp_path
    # good inputs, so that only the case's own defect is wrong
    write_jsonl(tmp / "data.jsonl", triaged_rows(2) if case.stage in ("score", "train") else [json.loads(rec(id="g1"))])
    (tmp / "prompts.jsonl").write_text(json.dumps({"prompt": "Hi?"}) + "\n")
    for name, content in case.files.items():
        data = content if isinstance(content, bytes) else fill(content, tmp).encode()
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(data)
    sentinels = {}
    for rel in OUTPUTS[case.stage]:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(SENTINEL)
        sentinels[path] = SENTINEL
    root = tmp / Path(OUTPUTS[case.stage][0]).parts[0]
    before = sorted(p.relative_to(tmp) for p in root.rglob("*"))
    argv = [fill(a, tmp) for a in merged_argv(default_argv(case.stage, tiny_model), case.args)]

    res = zygote.run(argv, env={"REALIGN_CACHE": str(tmp / "realign-cache")}, timeout=120)

    err_lines = [line for line in res.err.splitlines() if line.strip()]
    assert res.code == 2, (res.code, res.err[-3000:])
    assert "Traceback" not in res.err + res.out
    assert len(err_lines) == 1, res.err
    line = err_lines[0]
    assert line.startswith("error: "), line
    for part in case.expect:
        assert fill(part, tmp) in line, (part, line)
    for path, content in sentinels.items():
        assert path.read_bytes() == content, f"{path} was changed by a failed run"
    MESSAGES[case.name] = line.replace(str(tmp), "<tmp>").replace(str(tiny_model), "<model>")
    assert sorted(p.relative_to(tmp) for p in root.rglob("*")) == before, "a failed run left files among the outputs"


def test_corpus_size_and_coverage():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)) and len(CASES) >= 30
    stages = {c.stage for c in CASES}
    assert stages == {"triage", "score", "train", "eval"}
    record_results("bad_inputs", {
        "cases": len(CASES),
        "by_stage": {s: sum(c.stage == s for c in CASES) for s in sorted(stages)},
        "messages": {n: MESSAGES[n] for n in names if n in MESSAGES},
        "checks": "exit 2; exactly one stderr line 'error: ...' naming file/field; no traceback; sentinel outputs unchanged",
    })


# ------------------------------------------------------------------------------ truncation


def long_rows(n: int) -> list[dict]:
    rows = triaged_rows(n)
    for r in rows[::3]:  # INVERT records: a very long chosen response
        r["chosen"] = "Here is an overview. " + "It has many details, one after another. " * 400
    return rows


def test_very_long_texts_are_truncated_and_reported_by_score_and_train(zygote, tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "long.jsonl", long_rows(4))
    res = zygote.run(["score", "--model", tiny_model, "--data", data, "--out", tmp_path / "weighted.jsonl", "--device", "cpu",
                      "--gold-size", "6", "--max-length", "64", "-q"])
    assert res.code == 0, res.err[-3000:]
    summary = json.loads((tmp_path / "weighted.summary.json").read_text())
    assert summary["truncated_sequences"] >= 4, summary["truncated_sequences"]
    res = zygote.run(["train", "--model", tiny_model, "--data", data, "--out", tmp_path / "run", "--device", "cpu",
                      "--max-steps", "1", "--config", _write(tmp_path / "t.yaml", "max_length: 64\nlora: {r: 4}\n"), "-q"])
    assert res.code == 0, res.err[-3000:]
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["truncated_sequences"] >= 4, summary["truncated_sequences"]
    # within the limit nothing is counted
    short = write_jsonl(tmp_path / "short.jsonl", triaged_rows(4))
    res = zygote.run(["score", "--model", tiny_model, "--data", short, "--out", tmp_path / "w2.jsonl", "--device", "cpu",
                      "--gold-size", "6", "--max-length", "256", "-q"])
    assert res.code == 0 and json.loads((tmp_path / "w2.summary.json").read_text())["truncated_sequences"] == 0


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
