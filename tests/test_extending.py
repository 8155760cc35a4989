"""docs/extending.md's worked examples run as written and plug into the registries they name."""

import json
import re
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realign.cli import app
from realign.config import JudgeConfig, TriageConfig
from realign.data import INVERT, RETAIN, PreferencePair
from realign.errors import RealignError
from realign.judges.base import JudgeItem
from realign.objective.losses import LOSS_KINDS
from realign.reading import validate
from realign.resources import resource_path
from realign.runs.stage import summary_path
from realign.testing.tiny import save_tiny, tiny_llama, tiny_tokenizer
from realign.train.methods import METHODS, MethodOptions, get_method

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def example(section: str) -> str:
    """The ``python`` block of one section of docs/extending.md."""
    text = DOC.read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", body, re.S)
    assert len(blocks) == 1, section
    return blocks[0]


def test_the_method_example_registers_a_method_the_trainer_can_use(monkeypatch):
    monkeypatch.setattr("realign.train.methods.METHODS", dict(METHODS))
    exec(example("A method"), {})
    method = get_method("invert-only")
    records = [PreferencePair("a", "x", "good", "bad", category=INVERT), PreferencePair("b", "y", "ok", "meh", category=RETAIN)]
    terms = method.terms(records, MethodOptions())
    assert [(t.kind, t.first, t.second, t.component) for t in terms] == [("pref", "good", "bad", "L_I")]
    assert all(t.kind in LOSS_KINDS for t in terms) and not method.needs_impact
    assert "invert-only" not in METHODS  # the registry of the package is left as it was


def test_the_loss_kind_example_computes_its_loss():
    exec(example("A loss kind"), {})  # the block asserts its own values


@pytest.fixture
def keyword_backend(monkeypatch):
    """docs/extending.md's judge backend, registered at run time as its block does, after
    realign.config was imported (the registry's table is restored afterwards)."""
    from realign.judges import registry

    monkeypatch.setattr(registry, "BACKENDS", dict(registry.BACKENDS))
    module = types.ModuleType("keyword_backend")
    monkeypatch.setitem(sys.modules, "keyword_backend", module)
    exec(example("A judge backend"), module.__dict__)
    return module


def test_the_judge_backend_example_is_built_through_the_registry(keyword_backend):
    from realign.judges import make_judge
    from realign.judges import registry

    assert "keyword" in registry.backend_names("pointwise")
    judge = make_judge(validate(JudgeConfig, {"backend": "keyword"}, "judge.yaml"))
    verdicts = judge.judge([JudgeItem("q", "fine"), JudgeItem("q", "Forbidden")], policy=None)
    assert [v.compliant for v in verdicts] == [True, False] and judge.calls == 2


def test_a_backend_is_checked_against_the_registry_when_a_config_is_validated(keyword_backend):
    """JudgeConfig.backend was a Literal of the backends known when realign.config was imported,
    so a backend registered later was refused (pydantic's literal_error)."""
    assert validate(TriageConfig, {"data": "d", "policy": "p", "out": "o", "judge": {"backend": "keyword"}},
                    "t.yaml").judge.backend == "keyword"
    with pytest.raises(RealignError, match=r"t.yaml: field 'judge.backend': expected rules, openai, hf, keyword"):
        validate(TriageConfig, {"data": "d", "policy": "p", "out": "o", "judge": {"backend": "nope"}}, "t.yaml")
    with pytest.raises(RealignError, match=r"field 'oracle.backend': expected openai, hf "):
        validate(TriageConfig, {"data": "d", "policy": "p", "out": "o", "oracle": {"backend": "keyword"}}, "t.yaml")


def test_a_registered_backend_judges_realign_triage(keyword_backend, tmp_path):
    out = tmp_path / "triaged.jsonl"
    res = CliRunner().invoke(app, ["triage", "--data", str(resource_path("examples/pairs.jsonl")), "--policy",
                                   "contextual-exceptions", "--judge", "keyword", "--out", str(out),
                                   "--cache", str(tmp_path / "cache.sqlite"),
                                   "--max-case-failure-rate", "1"])  # a keyword misreads the policy's cases
    assert res.exit_code == 0, res.output
    assert "judge keyword/v1" in res.output
    assert json.loads(summary_path(out).read_text())["judge"] == "keyword/v1"


def test_a_registered_backend_and_method_run_in_realign_run(keyword_backend, monkeypatch, tmp_path):
    """The judge backend and the method of docs/extending.md, registered at run time, in one
    `realign run` config: triage and eval judge with the backend, the method is trained."""
    monkeypatch.setattr("realign.train.methods.METHODS", dict(METHODS))
    exec(example("A method"), {})
    tok = tiny_tokenizer()
    model = save_tiny(tmp_path / "tiny", tokenizer=tok, model=tiny_llama(tok, seed=2))
    pairs = tmp_path / "pairs.jsonl"  # the keyword judge finds every chosen response violating: all INVERT
    pairs.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"Question {i}?", "chosen": f"The forbidden answer {i}.",
                                         "rejected": f"A fine answer {i}."}) + "\n" for i in range(4)))
    (tmp_path / "run.yaml").write_text(f"""
out: {tmp_path / "run"}
model: {model}
data: {pairs}
policy: contextual-exceptions
judge: {{backend: keyword}}
triage: {{max_case_failure_rate: 1}}
methods: [invert-only]
device: cpu
train: {{max_steps: 1, batch_size: 4, lora: {{r: 4}}}}
eval: {{prompts: {pairs}, max_new_tokens: 2}}
report: false
""")
    res = CliRunner().invoke(app, ["run", str(tmp_path / "run.yaml"), "-q"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "run"
    assert json.loads((run / "triage" / "triaged.summary.json").read_text())["judge"] == "keyword/v1"
    trained = json.loads((run / "train" / "invert-only" / "train_summary.json").read_text())
    assert trained["method"]["name"] == "invert-only" and trained["steps"] == 1
    for name in ("base", "invert-only"):
        assert json.loads((run / "eval" / name / "metrics.json").read_text())["judge"] == "keyword/v1"


def test_the_metric_example_is_measured_and_shown(monkeypatch, capsys):
    from realign.cli.stages import _echo_before_after
    from realign.metrics import table as metrics
    from realign.judges.base import Verdict
    from realign.report.sections import _cell

    namespace: dict = {}
    exec(example("A metric"), namespace)
    monkeypatch.setattr(metrics, "METRICS", (*metrics.METRICS, namespace["COMPLIANT"]))
    rows = [{"id": "a", "prompt": "p", "slice": "s"}, {"id": "b", "prompt": "q", "slice": "s"}]
    outcomes = metrics.Outcomes("policy", rows, [Verdict(True), Verdict(False)], [True, False], [], None)
    measured = metrics.measure(outcomes)
    assert measured["compliant"]["rate"] == 0.5 and measured["compliant"]["n"] == 2
    shown = [h for h in metrics.headlines() if h.column == "Compliant"]
    assert len(shown) == 1 and shown[0].summary == "compliant responses"
    assert _cell(shown[0], shown[0].read(measured)) == "50.0%"
    _echo_before_after({"before": {"compliant": {"rate": 0.25}}, "after": measured})
    assert [line.split()[-2:] for line in capsys.readouterr().out.splitlines() if "compliant" in line] == [["25.0%", "50.0%"]]


def test_the_names_earlier_versions_of_this_page_imported_still_import():
    """The recipes once imported the categories from realign.triage and the metric table and rate
    statistics from realign.evaluate; those names stay where user code may import them."""
    import realign.data
    import realign.metrics.stats
    import realign.metrics.table
    from realign.evaluate import metrics, stats
    from realign.triage import INVERT, PUNISH, RETAIN

    assert (INVERT, PUNISH, RETAIN) == realign.data.CATEGORIES
    assert metrics.Metric is realign.metrics.table.Metric and metrics.METRICS is realign.metrics.table.METRICS
    assert stats.rate is realign.metrics.stats.rate


def test_a_loss_kind_in_the_table_is_trained_by_a_method_that_names_it(monkeypatch, tmp_path):
    """The loss kind of docs/extending.md in the table the trainer reads, as adding it to the tuple
    in src/realign/objective/losses.py makes it (LOSS_KINDS and KIND_INDEX both hold it), and a method whose
    terms name it, trained by `realign run` on the examples: its loss is what the kind computes."""
    from realign.objective import losses
    from realign.objective import Term
    from realign.train.methods import Method

    namespace: dict = {}
    exec(example("A loss kind"), namespace)
    monkeypatch.setitem(losses.LOSS_KINDS, "sft", namespace["sft"])
    monkeypatch.setitem(losses.KIND_INDEX, "sft", len(losses.KIND_INDEX))

    class SFTChosen(Method):
        name, description = "sft-chosen", "SFT on every record's chosen response"

        def terms(self, records, options):
            return [Term("sft", r.prompt, r.chosen, None, 1.0, "L_SFT") for r in records]

    monkeypatch.setitem(METHODS, "sft-chosen", SFTChosen())
    tok = tiny_tokenizer()
    model = save_tiny(tmp_path / "tiny", tokenizer=tok, model=tiny_llama(tok, seed=2))
    pairs = resource_path("examples/pairs.jsonl")
    (tmp_path / "run.yaml").write_text(f"""
out: {tmp_path / "run"}
model: {model}
data: {pairs}
policy: contextual-exceptions
methods: [sft-chosen]
device: cpu
train: {{max_steps: 1, batch_size: 4, lora: {{r: 4}}, logging_steps: 1, nll_weight: 0}}
eval: {{prompts: {pairs}, max_new_tokens: 2}}
report: false
""")
    res = CliRunner().invoke(app, ["run", str(tmp_path / "run.yaml"), "-q"])
    assert res.exit_code == 0, res.output
    trained = json.loads((tmp_path / "run" / "train" / "sft-chosen" / "train_summary.json").read_text())
    logged = next(h for h in trained["log_history"] if "L_SFT" in h)
    assert trained["steps"] == 1 and logged["L_SFT"] > 0 and "L_NLL" not in logged
