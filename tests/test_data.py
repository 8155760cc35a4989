import json

import pytest

from realign.data import PreferencePair, prompt_text, read_pairs, response_text, write_pairs
from realign.errors import DataError, RealignError


def write_lines(path, lines):
    path.write_bytes(b"".join((l if isinstance(l, bytes) else l.encode()) + b"\n" for l in lines))
    return path


def rec(**kw):
    base = {"prompt": "How are you?", "chosen": "Fine.", "rejected": "Go away."}
    base.update(kw)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


def test_standard_jsonl_roundtrip(tmp_path):
    src = write_lines(tmp_path / "d.jsonl", [rec(id="a", source="pku"), "", rec(prompt="Hi", id=7)])
    result = read_pairs(src)
    assert [p.id for p in result.pairs] == ["a", "7"]
    first = result.pairs[0]
    assert (first.prompt, first.chosen, first.rejected) == ("How are you?", "Fine.", "Go away.")
    assert first.meta == {"source": "pku"}  # unknown fields are kept
    out = tmp_path / "out.jsonl"
    write_pairs(out, result.pairs)
    again = read_pairs(out).pairs
    assert again == result.pairs


def test_id_defaults_to_content_hash(tmp_path):
    src = write_lines(tmp_path / "d.jsonl", [rec(), rec(prompt="Other")])
    ids = [p.id for p in read_pairs(src).pairs]
    assert len(set(ids)) == 2 and all(len(i) == 16 for i in ids)
    assert ids == [p.id for p in read_pairs(src).pairs]  # stable


def test_json_array_and_data_key(tmp_path):
    rows = [json.loads(rec(id="x")), json.loads(rec(id="y"))]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "b.json").write_text(json.dumps({"data": rows}))
    assert [p.id for p in read_pairs(tmp_path / "a.json").pairs] == ["x", "y"]
    assert [p.id for p in read_pairs(tmp_path / "b.json").pairs] == ["x", "y"]


def test_conversational_explicit_prompt(tmp_path):
    row = {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}],
        "chosen": [{"role": "assistant", "content": "Hello."}],
        "rejected": [{"role": "assistant", "content": "No."}],
    }
    pair = read_pairs(write_lines(tmp_path / "c.jsonl", [json.dumps(row)])).pairs[0]
    assert pair.conversational
    assert prompt_text(pair.prompt) == "[system]\nBe brief.\n\n[user]\nHi?"
    assert response_text(pair.chosen) == "Hello."


def test_conversational_implicit_prompt_is_the_shared_prefix(tmp_path):
    user = {"role": "user", "content": "What colour is the sky?"}
    row = {
        "chosen": [user, {"role": "assistant", "content": "Blue."}],
        "rejected": [user, {"role": "assistant", "content": "Green."}],
    }
    pair = read_pairs(write_lines(tmp_path / "c.jsonl", [json.dumps(row)])).pairs[0]
    assert pair.prompt == [user]
    assert pair.chosen == [{"role": "assistant", "content": "Blue."}]
    assert pair.rejected == [{"role": "assistant", "content": "Green."}]
    assert prompt_text(pair.prompt) == "What colour is the sky?"


def test_hf_dataset_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([json.loads(rec(id="d1")), json.loads(rec(id="d2", prompt="Q2"))])
    ds.save_to_disk(str(tmp_path / "ds"))
    assert [p.id for p in read_pairs(tmp_path / "ds").pairs] == ["d1", "d2"]
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "dd"))
    assert len(read_pairs(tmp_path / "dd", split="test").pairs) == 2
    with pytest.raises(RealignError, match="no split 'train'"):
        read_pairs(tmp_path / "dd")
    ds.to_parquet(str(tmp_path / "d.parquet"))
    assert [p.id for p in read_pairs(tmp_path / "d.parquet").pairs] == ["d1", "d2"]


def test_missing_hub_dataset_offline_is_one_clear_error():
    with pytest.raises(RealignError, match="cannot load dataset") as info:
        read_pairs("hf:no-such-org/no-such-dataset")
    assert "\n" not in str(info.value)


BAD_CASES = [
    ("invalid json", ['{"prompt": "x", "chosen": '], 1, None, "invalid JSON"),
    ("not an object", ["[1, 2]"], 1, None, "expected a JSON object"),
    ("missing chosen", [json.dumps({"prompt": "p", "rejected": "r"})], 1, "chosen", "missing"),
    ("missing prompt", [json.dumps({"chosen": "c", "rejected": "r"})], 1, "prompt", "missing"),
    ("wrong type", [rec(chosen=3)], 1, "chosen", "expected a string, got int"),
    ("empty text", [rec(rejected="")], 1, "rejected", "is empty"),
    ("whitespace", [rec(prompt="  \n ")], 1, "prompt", "whitespace only"),
    ("nul byte", [rec(chosen="a\u0000b")], 1, "chosen", "NUL byte"),
    ("bad utf8", [rec(), b'{"prompt": "\xff\xfe", "chosen": "a", "rejected": "b"}'], 2, None, "not valid UTF-8"),
    ("unknown category", [rec(category="FLIP")], 1, "category", "unknown category 'FLIP'"),
    ("negative impact", [rec(impact=-0.5)], 1, "impact", "finite number >= 0"),
    ("nan impact", ['{"prompt": "p", "chosen": "c", "rejected": "r", "impact": NaN}'], 1, "impact", "finite"),
    ("string impact", [rec(impact="high")], 1, "impact", "expected a number"),
    ("duplicate id", [rec(id="a"), rec(id="a", prompt="other")], 2, "id", "duplicate record id 'a'"),
    ("duplicate id, other meta", [rec(id="a", source="x"), rec(id="a", source="y")], 2, "id", "'meta.source' differs"),
    ("same pair, other meta", [rec(source="x"), rec(source="y")], 2, "meta.source", "the same prompt and responses as line 1"),
    ("overflowing impact", [rec(impact=1e308)], 1, "impact", "1e+308 overflows the float32 weight"),
    ("mixed formats", [rec(chosen=[{"role": "assistant", "content": "x"}], rejected="y")], 1, "rejected", "expected a list"),
    ("bad role", [json.dumps({"prompt": [{"role": "robot", "content": "x"}], "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]})], 1, "prompt[0].role", "unknown role"),
    ("message without content", [json.dumps({"prompt": [{"role": "user"}], "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]})], 1, "prompt[0].content", "missing"),
    ("bad verdicts", [rec(verdicts={"chosen": {"compliant": "yes"}, "rejected": {}})], 1, "verdicts.chosen.compliant", "true, false or null"),
    ("bad swapped", [rec(swapped="no")], 1, "swapped", "true or false"),
]


@pytest.mark.parametrize("name,lines,line,field,message", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_records_name_file_line_and_field(tmp_path, name, lines, line, field, message):
    src = write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(DataError) as info:
        read_pairs(src)
    err = info.value
    assert err.line == line and err.field == field
    text = str(err)
    assert text.startswith(f"{src}:{line}") and message in text and "\n" not in text
    if field:
        assert f"field '{field}'" in text


def test_skip_invalid_reports_and_keeps_good_records(tmp_path):
    src = write_lines(tmp_path / "d.jsonl", [rec(id="ok1"), "{oops", rec(id="bad", chosen=""), rec(id="ok2")])
    seen = []
    result = read_pairs(src, skip_invalid=True, on_skip=seen.append)
    assert [p.id for p in result.pairs] == ["ok1", "ok2"]
    assert [e.line for e in result.skipped] == [2, 3] and seen == result.skipped


def test_exact_duplicates_are_left_out_and_counted(tmp_path):
    """Issue 27, item 21: a record equal to an earlier one (with or without an id) is left out
    and counted, in JSONL and JSON arrays; the first stays in its place."""
    src = write_lines(tmp_path / "d.jsonl", [rec(), rec(id="a", prompt="Hi"), rec(), rec(id="a", prompt="Hi"), rec()])
    result = read_pairs(src)
    assert [p.prompt for p in result.pairs] == ["How are you?", "Hi"] and result.duplicates == 3
    assert result.duplicates_line() == f"{src}: 3 exact duplicate record(s) left out (the same id and content as an earlier record)"
    array = tmp_path / "d.json"
    array.write_text(json.dumps([json.loads(rec(id=1)), json.loads(rec(id=1))]))
    assert read_pairs(array).duplicates == 1
    assert read_pairs(write_lines(tmp_path / "u.jsonl", [rec()])).duplicates_line() is None


def test_json_array_errors_name_the_index(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([json.loads(rec(id="a")), {"prompt": "p", "chosen": "c"}]))
    with pytest.raises(DataError, match=r"\[record 1\] field 'rejected': missing"):
        read_pairs(path)


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(RealignError, match="file not found"):
        read_pairs(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(RealignError, match="no records"):
        read_pairs(tmp_path / "empty.jsonl")


def test_require_category(tmp_path):
    src = write_lines(tmp_path / "d.jsonl", [rec()])
    with pytest.raises(DataError, match="run `realign triage` first"):
        read_pairs(src, require_category=True)


def test_write_is_atomic_and_keeps_old_file_on_failure(tmp_path):
    out = tmp_path / "out.jsonl"
    good = [PreferencePair("a", "p", "c", "r")]
    write_pairs(out, good)
    before = out.read_bytes()

    def exploding():
        yield PreferencePair("b", "p", "c", "r")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_pairs(out, exploding())
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temp file left behind
