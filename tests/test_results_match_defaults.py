"""The results files behind the README's rows record the settings they ran with, and those are
still the code's defaults: a changed default (the synthetic world's RUN_DEFAULTS, a library
default under them, the SmolLM2 example's config) fails here until the benchmark is rerun or the
README says the row is from older settings."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))

RERUN = "rerun the benchmark, or mark its README rows as from older settings"
#: The validation run whose selected variant is today's synthetic-world defaults (README: "the selection that made
#: today's defaults").
DEFAULTS_SELECTION = "efficacy_validation_temperature_w6.json"


def _json(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def _from_older_settings(name: str) -> bool:
    """A results file may say it ran with older settings (its ``older_settings``: a sentence that
    names what changed since) while its rerun is under way — only if the README says that very
    sentence where it shows the figures."""
    note = _json(name).get("older_settings")
    if not note:
        return False
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert " ".join(note.split()) in readme, f"{name} ran with older settings; the README must say so: {note!r}"
    return True


@pytest.mark.parametrize("name", ["efficacy.json", "efficacy_validation.json", "efficacy_ceiling.json", DEFAULTS_SELECTION])
def test_efficacy_results_ran_with_todays_settings(name):
    """Every variant's recorded stage settings (the synthetic world's defaults, the benchmark's
    and the variant's overrides, the library's defaults) are what the code gives it today."""
    from efficacy import variant_settings

    result = _json(name)
    if _from_older_settings(name):
        return
    today = json.loads(json.dumps(variant_settings(result["variants"])))
    for variant, recorded in result["settings"].items():
        assert recorded == today[variant], f"{name}, variant {variant!r}: settings differ from today's; {RERUN}"


def test_the_report_split_and_the_selected_validation_variant_are_the_synthetic_worlds_defaults():
    """The README's report tables run the defaults ('default' variant, no overrides), and the
    validation run the README says chose today's defaults selected what the defaults are."""
    from efficacy import variant_settings

    defaults = json.loads(json.dumps(variant_settings({"default": {}})["default"]))
    if not _from_older_settings("efficacy.json"):
        assert _json("efficacy.json")["settings"] == {"default": defaults}, RERUN
    validation = _json(DEFAULTS_SELECTION)
    selected = validation["selection"]["selected"]
    assert validation["settings"][selected] == defaults, f"selected {selected!r} is no longer the default; {RERUN}"


def test_the_real_model_results_ran_the_smollm2_examples_settings():
    """real_smollm2.json's settings are examples/smollm2's config with the benchmark's overrides,
    as README's real-model paragraph says (the policy by its path inside the example) — or that
    paragraph says its figures are from older settings (the benchmark's settings changed and it
    has not been rerun; regenerating the paragraph from new results drops the statement)."""
    from real_smollm2 import PARAGRAPH_MARKERS, default_settings

    today = json.loads(json.dumps(default_settings()))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    paragraph = readme.split(PARAGRAPH_MARKERS[0], 1)[1].split(PARAGRAPH_MARKERS[1], 1)[0]
    if "from older settings" not in " ".join(paragraph.split()):
        _assert_example_settings(_json("real_smollm2.json")["config"], default_settings())
    assert (today["train"]["alpha_kl"], today["train"]["learning_rate"], today["train"]["nll_weight"],
            today["train"]["max_steps"], today["train"]["lora"]["r"]) == (0.3, 1e-3, 1.0, 80, 16)  # README says so


def test_the_smollm2_examples_quick_block_is_the_quick_results():
    """examples/smollm2/README.md's block of what run_all.sh gives across seeds is what
    results/real_smollm2_quick.json renders (`python benchmarks/real_smollm2.py --profile quick
    --readme examples/smollm2/README.md`), or says it has not been run while there is no such file."""
    from real_smollm2 import QUICK_MARKERS, quick_block

    readme = (ROOT / "examples" / "smollm2" / "README.md").read_text(encoding="utf-8")
    block = QUICK_MARKERS[0] + readme.split(QUICK_MARKERS[0], 1)[1].split(QUICK_MARKERS[1], 1)[0] + QUICK_MARKERS[1]
    if not (RESULTS / "real_smollm2_quick.json").exists():
        assert block.split("\n")[1].startswith("Not run yet:") and len(block.splitlines()) == 3
        return
    lines = quick_block(_json("real_smollm2_quick.json"), "benchmarks/results/real_smollm2_quick.json")
    assert block == "\n".join(lines), "the quick block differs from results/real_smollm2_quick.json: regenerate it"


def test_the_quick_results_ran_the_examples_files_as_they_are():
    """results/real_smollm2_quick.json ran what run_all.sh runs today (build_pairs.py's defaults,
    align_old.yaml and config.yaml): a changed example file fails here until the seeds are rerun."""
    from real_smollm2 import quick_settings

    if not (RESULTS / "real_smollm2_quick.json").exists():
        return
    _assert_example_settings(_json("real_smollm2_quick.json")["config"], quick_settings())


def _assert_example_settings(recorded: dict, today: dict) -> None:
    """A SmolLM2 results file's settings are ``today``'s, the policy compared by its path inside
    the example (wherever the benchmark ran)."""
    from real_smollm2 import EXAMPLE

    today = json.loads(json.dumps(today))
    inside = lambda path: path.split(str(EXAMPLE.relative_to(ROOT)) + "/", 1)[-1]  # noqa: E731
    assert inside(recorded.pop("policy")) == inside(today.pop("policy")), RERUN
    assert recorded == today, RERUN


def test_the_impact_accuracy_results_ran_the_scripts_settings():
    from impact_accuracy import FAST, SETTINGS, VARIANTS

    result = _json("impact_accuracy.json")
    assert result["settings"] == SETTINGS, RERUN
    assert [(r["variant"], r["method"]) for r in result["rows"]] == [(v, m) for v in VARIANTS for m in FAST], RERUN


def _speed_table() -> str:
    """The table of README's 'Speed and memory' section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Speed and memory\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


def test_the_impact_speed_results_time_the_default_variant_and_every_variant_the_readme_names():
    """impact_speed.json pins the score variants it timed (each path's recorded stage settings
    say so), today's default (`ScoreConfig.variant`) is among them, and the README's speed table
    names no variant the file does not record."""
    from realign.config import ScoreConfig
    from realign.score.weights import VARIANTS

    result = _json("impact_speed.json")
    recorded = set(result.get("variants", []))
    for label, shape in result["shapes"].items():
        timed = shape.get("variants", {})
        assert set(timed) == recorded, f"impact_speed.json, shape {label}: {RERUN}"
        for variant, measured in timed.items():
            assert measured["settings"]["variant"] == variant, f"impact_speed.json, {label}/{variant}: {RERUN}"
    default = ScoreConfig.model_fields["variant"].default
    assert default in recorded, f"impact_speed.json does not time the default variant {default!r}; {RERUN}"
    named = {v for v in VARIANTS if f"`{v}`" in _speed_table()}
    assert named <= recorded, f"README's speed table names {sorted(named - recorded)}, not in impact_speed.json"


def test_the_readme_demo_table_is_the_demo_results_and_they_ran_todays_settings():
    """README's demo table is what benchmarks/demo.py recorded (results/demo.json), and that run
    had today's synthetic-world settings: a changed default fails here until the demo is rerun."""
    from demo import table_lines

    from realign.synth.experiment import stage_settings

    result = _json("demo.json")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "\n".join(table_lines(result)) in readme, "README's demo table differs from results/demo.json"
    assert result["settings"] == json.loads(json.dumps(stage_settings())), RERUN


def test_the_readme_efficacy_tables_are_the_report_results():
    """README's report-split summary and target tables are what results/efficacy.json renders
    (`python benchmarks/efficacy.py --readme README.md`), not hand-copied figures."""
    from efficacy import readme_blocks

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for lines in readme_blocks(_json("efficacy.json"), "benchmarks/results/efficacy.json").values():
        assert "\n".join(lines) in readme, f"README's block {lines[0]} differs from results/efficacy.json: regenerate it"
