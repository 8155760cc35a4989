"""Likely mistakes in policies, configs and data are refused with the file, the line and the fix
(issue 17, item 3): a rule regex holding a control character (``"\\bdata brokers?\\b"`` in YAML
double quotes is a backspace, not a word boundary), a key given twice in a YAML mapping, a key
given twice in one JSON record."""

import json
from pathlib import Path

import pytest

from cli_run import realign
from realign.config import load_yaml
from realign.data import read_pairs
from realign.errors import DataError, RealignError
from realign.evaluate.attacks import load_templates
from realign.policy import Policy
from realign.resources import resource_path

EXAMPLES = resource_path("examples/pairs.jsonl")

POLICY = """\
name: mine
text: Data brokers may not be used against a person.
rules:
  styles:
    refusal: ['\\bI (can''t|cannot)\\b']
    answer: ['\\S']
  categories:
    privacy: [{privacy}]
  requirements:
    - categories: [privacy]
      allow: [refusal]
"""


def policy(tmp_path, privacy: str, text: str = POLICY) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text.replace("{privacy}", privacy), encoding="utf-8")
    return path


# ---- rule regexes with control characters


def test_the_issue_case_double_quoted_word_boundary(tmp_path, capsys, monkeypatch):
    path = policy(tmp_path, '"\\bdata brokers?\\b"')
    out = tmp_path / "t.jsonl"
    code, err = realign(capsys, monkeypatch, "triage", "--data", EXAMPLES, "--judge", "rules", "--policy", path,
                        "--out", out, "--cache", tmp_path / "c.sqlite", "-q")
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith(f"error: {path}:8: rules.categories.privacy[0]: ")
    assert "'\\x08data brokers?\\x08'" in err and "backspace" in err
    assert err.rstrip().endswith("write the regex in single quotes: '\\bdata brokers?\\b'")
    assert not out.exists() and not (tmp_path / "t.summary.json").exists() and not (tmp_path / "c.sqlite").exists()


def test_single_quoted_word_boundary_loads_and_matches(tmp_path):
    loaded = Policy.load(policy(tmp_path, "'\\bdata brokers?\\b'"))
    assert loaded.rules.categories["privacy"] == ["\\bdata brokers?\\b"]


@pytest.mark.parametrize(
    "text,line,where,fix",
    [
        # a folded block keeps its line break: the regex would need a newline after "consult"
        (POLICY.replace("      allow: [refusal]\n", "      allow: [refusal]\n      must_include:\n        - >\n          consult\n"),
         13, "rules.requirements[0].must_include[0]", "'consult'"),
        (POLICY + '  forbidden: ["kill\\ayourself"]\n', 12, "rules.forbidden[0]", "'kill\\ayourself'"),
        (POLICY.replace("    answer: ['\\S']", '    answer: ["\\tx"]'), 6, "rules.styles.answer[0]", "'\\tx'"),
        (POLICY.replace("      allow: [refusal]\n", "      allow: [refusal]\n      must_not_include: [\"it's \\fx\"]\n"),
         12, "rules.requirements[0].must_not_include[0]", "'it''s \\fx'"),
        (POLICY + '  forbidden: ["\\dx"]\n', None, None, None),  # \\d is no YAML escape: invalid YAML, with its line
    ],
)
def test_control_characters_anywhere_in_the_rules(tmp_path, text, line, where, fix):
    path = policy(tmp_path, "'doxx'", text)
    with pytest.raises(RealignError) as exc:
        Policy.load(path)
    message = str(exc.value)
    assert "\n" not in message
    if line is None:
        assert message.startswith(f"{path}:12: invalid YAML")
    else:
        assert message.startswith(f"{path}:{line}: {where}: ") and message.endswith(f"single quotes: {fix}")


def test_control_character_in_a_policy_built_in_code(tmp_path):
    with pytest.raises(RealignError, match="rules.forbidden\\[0\\]: the regular expression '\\\\x08x'"):
        Policy.from_dict({"name": "p", "text": "t", "rules": {"forbidden": ["\bx"]}})


def test_control_characters_outside_the_regexes_are_not_touched(tmp_path):
    text = POLICY.replace("text: Data brokers may not be used against a person.", 'text: "Tabs\\tand\\nlines"')
    assert Policy.load(policy(tmp_path, "'doxx'", text)).text == "Tabs\tand\nlines"


def test_packaged_policies_load():
    from realign.policy import packaged_policies

    for path in packaged_policies().values():
        Policy.load(path)


# ---- duplicate keys in YAML


def test_duplicate_requirements_in_a_policy(tmp_path, capsys, monkeypatch):
    text = POLICY + "  requirements:\n    - allow: [answer]\n"
    path = policy(tmp_path, "'doxx'", text)
    code, err = realign(capsys, monkeypatch, "triage", "--data", EXAMPLES, "--judge", "rules", "--policy", path,
                        "--out", tmp_path / "t.jsonl", "--cache", tmp_path / "c.sqlite", "-q")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {path}:12: invalid YAML: duplicate key 'requirements' (first on line 9)")
    assert "keep one" in err and not (tmp_path / "t.jsonl").exists()


def test_duplicate_key_in_a_stage_config(tmp_path, capsys, monkeypatch):
    config = tmp_path / "triage.yaml"
    config.write_text(f"data: {EXAMPLES}\npolicy: contextual-exceptions\nout: {tmp_path / 'a.jsonl'}\n"
                      f"judge:\n  backend: rules\n  on_unparseable: drop\n  on_unparseable: retry\n")
    code, err = realign(capsys, monkeypatch, "triage", "--config", config, "-q")
    assert code == 2 and err == f"error: {config}:7: invalid YAML: duplicate key 'on_unparseable' (first on line 6): " \
        "the last one would silently win; keep one\n"
    assert not (tmp_path / "a.jsonl").exists()


def test_duplicate_key_in_a_judge_yaml(tmp_path, capsys, monkeypatch):
    judge = tmp_path / "judge.yaml"
    judge.write_text("backend: rules\nbackend: openai\n")
    code, err = realign(capsys, monkeypatch, "triage", "--data", EXAMPLES, "--policy", "contextual-exceptions",
                        "--judge", judge, "--out", tmp_path / "t.jsonl", "-q")
    assert code == 2 and err.startswith(f"error: {judge}:2: invalid YAML: duplicate key 'backend'")


@pytest.mark.parametrize(
    "text,line",
    [
        ("a: 1\nb:\n  c: 2\n  c: 3\n", 4),  # nested
        ("a: {x: 1, x: 2}\n", 1),  # flow mapping, both on one line
        ("1: a\n1: b\n", 2),  # non-string keys
        ("stages:\n  - out: x\n    out: y\n", 3),  # inside a list
    ],
)
def test_load_yaml_refuses_duplicates(tmp_path, text, line):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(RealignError, match=f"^{path}:{line}: invalid YAML: duplicate key"):
        load_yaml(path)


def test_load_yaml_keeps_merge_keys_and_distinct_keys(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("base: &b {lr: 1, steps: 2}\nrun:\n  <<: *b\n  lr: 3\nother: {'1': a, 1: b}\n")
    assert load_yaml(path) == {"base": {"lr": 1, "steps": 2}, "run": {"lr": 3, "steps": 2}, "other": {"1": "a", 1: "b"}}


def test_duplicate_attack_template(tmp_path):
    path = tmp_path / "attacks.yaml"
    path.write_text("templates:\n  a: 'x {prompt}'\n  a: 'y {prompt}'\n")
    with pytest.raises(RealignError, match=f"^{path}:3: invalid YAML: duplicate key 'a'"):
        load_templates(path)
    assert load_templates()  # the packaged ones load


# ---- duplicate keys in JSON records


def test_duplicate_key_in_a_jsonl_record(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data.jsonl"
    data.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n'
                    '{"prompt": "q", "chosen": "a", "rejected": "b", "chosen": "c"}\n')
    code, err = realign(capsys, monkeypatch, "triage", "--data", data, "--judge", "rules",
                        "--policy", "contextual-exceptions", "--out", tmp_path / "t.jsonl", "-q")
    assert code == 2
    assert err == f"error: {data}:2 field 'chosen': key 'chosen' appears twice in one object " \
        "(JSON would keep only the last, silently): keep one\n"
    assert not (tmp_path / "t.jsonl").exists()
    kept = read_pairs(data, skip_invalid=True)
    assert len(kept.pairs) == 1 and kept.skipped[0].line == 2 and kept.skipped[0].field == "chosen"


def test_duplicate_key_nested_in_a_json_array_record(tmp_path):
    data = tmp_path / "data.json"
    messages = '[{"role": "assistant", "content": "a", "content": "b"}]'
    data.write_text('[{"prompt": "p", "chosen": "a", "rejected": "b"},\n'
                    f' {{"prompt": "q", "chosen": {messages}, "rejected": "b"}}]')
    with pytest.raises(DataError) as exc:
        read_pairs(data)
    assert str(exc.value).startswith(f"{data} [record 1] field 'content': key 'content' appears twice")
    assert len(read_pairs(data, skip_invalid=True).pairs) == 1


def test_duplicate_key_in_a_json_wrapper(tmp_path):
    data = tmp_path / "data.json"
    record = json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"})
    data.write_text(f'{{"data": [{record}], "data": [{record}, {record}]}}')
    with pytest.raises(DataError, match="field 'data': key 'data' appears twice"):
        read_pairs(data)


def test_records_without_duplicates_read_as_before():
    assert len(read_pairs(EXAMPLES).pairs) == 36
