"""docs/extending.md's worked examples run as written and plug into the registries they name."""

import re
import sys
import types
from pathlib import Path
from types import SimpleNamespace

from realign.data import INVERT, RETAIN, PreferencePair
from realign.judges.base import JudgeItem
from realign.losses import LOSS_KINDS
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


def test_the_judge_backend_example_is_built_through_the_registry(monkeypatch):
    from realign.judges import make_judge
    from realign.judges import registry

    module = types.ModuleType("keyword_backend")
    exec(example("A judge backend"), module.__dict__)
    monkeypatch.setitem(sys.modules, "keyword_backend", module)
    monkeypatch.setitem(registry.BACKENDS, "keyword", {"pointwise": "keyword_backend.KeywordJudge"})
    assert "keyword" in registry.backend_names("pointwise")
    judge = make_judge(SimpleNamespace(backend="keyword"))
    verdicts = judge.judge([JudgeItem("q", "fine"), JudgeItem("q", "Forbidden")], policy=None)
    assert [v.compliant for v in verdicts] == [True, False] and judge.calls == 2


def test_the_metric_example_is_measured_and_shown(monkeypatch, capsys):
    from realign.cli import _echo_before_after
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
