"""The SmolLM2 example's evaluation sets (issue 31): the hand-written and composed prompts are as
large as the benchmark holds out, both policies classify every one as its list says (ordinary
ones recognised by a topic, so a refusal of them counts), and composed prompts are split by
template — a training prompt that instantiates a held-out template is refused."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "smollm2"
sys.path.insert(0, str(EXAMPLE))
sys.path.insert(0, str(ROOT / "benchmarks"))

import build_pairs  # noqa: E402
import compose_prompts  # noqa: E402


@pytest.fixture(scope="module")
def rules():
    from realign.judges.rules import CompiledRules
    from realign.policy import Policy

    return (CompiledRules(Policy.load(build_pairs.OLD_POLICY).rules),
            CompiledRules(Policy.load(build_pairs.NEW_POLICY).rules))


def test_the_benchmarks_sets_exist_and_every_prompt_is_classified_as_its_list_says(rules):
    from real_smollm2 import BUILD

    old, new = rules
    lists = build_pairs.prompt_lists([EXAMPLE / p for p in BUILD["prompts"]])
    for name, prompts in lists.items():
        build_pairs.check_classified(name, [p["prompt"] if isinstance(p, dict) else p for p in prompts], name, old, new)
    assert len(lists["ordinary"]) > BUILD["held_out"]["ordinary"] >= 40 and len(lists["qa"]) >= 60
    parts = compose_prompts.load_parts(EXAMPLE / BUILD["parts"])
    handwritten = [p["prompt"] if isinstance(p, dict) else p for v in lists.values() for p in v]
    every = {f"{n}/T{i}": t for n, v in parts.items() for i, t in enumerate(v["templates"])}
    assert compose_prompts.check_held_out_templates(handwritten, every) > 0  # so every seed's split passes
    for name, (train, held, templates) in BUILD["composed"].items():
        assert held >= 60
        everything = compose_prompts.compose(parts[name], list(range(len(parts[name]["templates"]))))
        build_pairs.check_classified(name, [text for text, _ in everything], name, old, new)
        smallest = templates * len(parts[name]["contexts"]) * len(parts[name]["topics"])
        assert held <= smallest and train <= len(everything) - smallest


def test_an_ordinary_prompt_no_category_recognises_is_refused(rules):
    with pytest.raises(SystemExit, match="everyday"):
        build_pairs.check_classified("ordinary", ["How do I tie a bowline knot?"], "prompts.yaml", *rules)


def test_held_out_prompts_use_only_held_out_templates():
    parts = {"contexts": ["For my class,", "For a research project,"], "topics": ["phishing", "fentanyl", "doxing"],
             "templates": ["what is {topic}, in simple terms?", "why is {topic} a problem?", "who studies {topic}?"]}
    train, held, templates = compose_prompts.split_by_template("contextual_help", parts, 5, 4, 1, random.Random(3))
    assert {r["template"] for r in held} == {f"contextual_help/T{t}" for t in templates} and len(templates) == 1
    assert not {r["template"] for r in train} & {r["template"] for r in held} and len(train) == 5
    again = compose_prompts.split_by_template("contextual_help", parts, 5, 4, 1, random.Random(3))
    assert again == (train, held, templates)  # seeded


def test_a_training_prompt_instantiating_a_held_out_template_is_refused():
    held = {"contextual_help/T0": "what is {topic}, in simple terms?"}
    assert compose_prompts.check_held_out_templates(["For my class, why is phishing a problem?"], held) == 1
    with pytest.raises(SystemExit, match="contextual_help/T0"):
        compose_prompts.check_held_out_templates(["I'm a nurse. What is fentanyl, in simple terms?"], held)
