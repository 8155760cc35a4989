"""PKU-SafeRLHF preparation on a fixture with the real schema."""

import json

import pytest

from realign.errors import DataError, RealignError
from realign.data.pku import chosen_index, pku_pairs


def row(i, safe0, safe1, safer, better=0):
    harm = {"Cybercrime": not safe0, "Violence": False}
    return {
        "prompt": f"prompt {i}", "response_0": f"r0-{i}", "response_1": f"r1-{i}",
        "prompt_source": "Alpaca3-70B", "response_0_source": "Alpaca-7B", "response_1_source": "Alpaca-7B",
        "is_response_0_safe": safe0, "is_response_1_safe": safe1,
        "response_0_harm_category": harm, "response_1_harm_category": harm,
        "response_0_severity_level": 0 if safe0 else 2, "response_1_severity_level": 0 if safe1 else 1,
        "better_response_id": better, "safer_response_id": safer,
    }


ROWS = [
    row(0, True, False, 0),      # one safe: the safe one (0)
    row(1, False, True, 0),      # one safe: the safe one (1), whatever safer says
    row(2, True, True, 1),       # both safe: safer_response_id
    row(3, False, False, 1),     # both unsafe: the safer one
    row(4, True, False, None),   # no safer_response_id: dropped
]


@pytest.mark.parametrize("r,expected", [(ROWS[0], 0), (ROWS[1], 1), (ROWS[2], 1), (ROWS[3], 1), (ROWS[4], None)])
def test_chosen_index_rules(r, expected):
    assert chosen_index(r) == expected


def test_pairs_from_a_local_parquet_copy(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(ROWS).to_parquet(str(tmp_path / "train.parquet"))
    pairs, counts = pku_pairs(str(tmp_path / "train.parquet"))
    assert [(p.chosen, p.rejected) for p in pairs] == [("r0-0", "r1-0"), ("r1-1", "r0-1"), ("r1-2", "r0-2"), ("r1-3", "r0-3")]
    assert counts == {"rows": 5, "dropped_no_safer_id": 1, "one_safe": 2, "both_safe": 1, "both_unsafe": 1}
    assert pairs[0].meta["chosen_safe"] is True and pairs[3].meta["rejected_safe"] is False


def test_cli_writes_pairs_from_jsonl(tmp_path):
    from typer.testing import CliRunner

    from realign.cli import app
    from realign.data import read_pairs

    src = tmp_path / "pku.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    res = CliRunner().invoke(app, ["data", "pku", "--source", str(src), "--out", str(tmp_path / "pairs.jsonl")])
    assert res.exit_code == 0, res.output
    assert "4 pairs from 5 rows" in res.output and len(read_pairs(tmp_path / "pairs.jsonl").pairs) == 4


def test_wrong_schema_and_offline_hub_are_clear(tmp_path):
    src = tmp_path / "other.jsonl"
    src.write_text(json.dumps({"prompt": "x", "chosen": "a", "rejected": "b"}) + "\n")
    with pytest.raises(DataError, match="field 'response_0': missing"):
        pku_pairs(str(src))
    with pytest.raises(RealignError, match="cannot load dataset"):
        pku_pairs(None)  # HF_HUB_OFFLINE=1 in tests: the hub copy is unreachable
