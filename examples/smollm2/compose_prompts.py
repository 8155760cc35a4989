"""Composed prompts of the SmolLM2 example (``prompt_parts.yaml``): "CONTEXT REQUEST", the
request a template with a topic in its ``{topic}`` slot, split by template.

A list's held-out prompts are drawn from templates held out for that seed only, so an
evaluation measures whether a method generalises to request wordings it never trained on, not
whether it remembers a prompt's frame. :func:`check_held_out_templates` makes it a fact: no
training prompt — composed, hand-written or HarmBench — instantiates a held-out template.
"""

from __future__ import annotations

import itertools
import random
import re
import sys
from pathlib import Path

import yaml

SLOT = "{topic}"


def load_parts(path: Path) -> dict[str, dict]:
    """The lists of a parts file ({list: {contexts, topics, templates}}), checked: three
    non-empty lists of text each, every template with one ``{topic}`` slot."""
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    lists = {name: v for name, v in raw.items() if isinstance(v, dict)}
    for name, parts in lists.items():
        for key in ("contexts", "topics", "templates"):
            values = parts.get(key)
            if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip() for v in values):
                sys.exit(f"error: {path}: {name}.{key}: expected a non-empty list of text")
        for i, template in enumerate(parts["templates"]):
            if template.count(SLOT) != 1:
                sys.exit(f"error: {path}: {name}.templates[{i}]: {template!r} needs exactly one {SLOT} slot")
    return lists


def template_id(name: str, index: int) -> str:
    return f"{name}/T{index}"


def compose(parts: dict, templates: list[int]) -> list[tuple[str, int]]:
    """Every (prompt, template index) of ``templates`` with every context and topic, in a fixed order."""
    return [(f"{context} {parts['templates'][t].replace(SLOT, topic)}", t)
            for t, context, topic in itertools.product(templates, parts["contexts"], parts["topics"])]


def template_pattern(template: str) -> re.Pattern[str]:
    """What an instance of ``template`` looks like at the end of a prompt: its words around any
    topic, case and surrounding whitespace ignored."""
    before, after = template.split(SLOT)
    return re.compile(re.escape(before.strip()) + r"\s*.+?\s*" + re.escape(after.strip()) + r"\s*$", re.IGNORECASE)


def split_by_template(name: str, parts: dict, train: int, held: int, templates: int, rng: random.Random
                      ) -> tuple[list[dict], list[dict], list[int]]:
    """(training items, held-out items, held-out template indices) of one list: ``templates``
    of its templates held out (seeded), ``held`` prompts drawn from their compositions and
    ``train`` from the other templates'."""
    order = list(range(len(parts["templates"])))
    rng.shuffle(order)
    held_templates = sorted(order[:templates])
    pools = {"train": compose(parts, sorted(order[templates:])), "eval": compose(parts, held_templates)}
    out: dict[str, list[dict]] = {}
    for side, n in (("train", train), ("eval", held)):
        if n > len(pools[side]):
            sys.exit(f"error: composed {name}: {n} {side} prompts asked, {len(pools[side])} compositions available")
        out[side] = [{"prompt": text, "template": template_id(name, t)} for text, t in rng.sample(pools[side], n)]
    return out["train"], out["eval"], held_templates


def check_held_out_templates(train_prompts: list[str], held: dict[str, list[str]]) -> int:
    """Exit if a training prompt instantiates a held-out template (``held``: template id ->
    text); returns how many (prompt, template) combinations were checked."""
    patterns = {tid: template_pattern(t) for tid, t in held.items()}
    for prompt in train_prompts:
        for tid, pattern in patterns.items():
            if pattern.search(prompt):
                sys.exit(f"error: the training prompt {prompt!r} instantiates the held-out template {tid} "
                         f"{held[tid]!r}: reword one of them")
    return len(train_prompts) * len(patterns)


def composed_specs(specs: list[str]) -> dict[str, tuple[int, int, int]]:
    """``LIST=TRAIN,EVAL,TEMPLATES`` specs as {list: (train, eval, held-out templates)}."""
    out = {}
    for spec in specs:
        name, _, counts = spec.partition("=")
        numbers = counts.split(",")
        if not name or len(numbers) != 3 or not all(n.strip().isdigit() for n in numbers):
            sys.exit(f"error: --composed {spec!r}: expected LIST=TRAIN,EVAL,TEMPLATES (three counts)")
        out[name] = tuple(int(n) for n in numbers)
    return out
