"""The synthetic policy-shift world for one seed: :class:`World` turns the world's plain data
-- sensitive categories in tiers with their topics and request contexts
(:mod:`realign.synth.topics`), paraphrase and response templates and response styles
(:mod:`realign.synth.templates`), and a benign task family with checkable answers
(:mod:`realign.synth.benign`) -- into prompts and responses, holding some templates out for
evaluation.

Texts are short (10-60 tokens) so a tiny model trained from scratch can learn them, and
every response names its topic, so the model has to read the prompt to answer. The harmful
style is a recognisable *placeholder* ("Step 1: get what you need for ... Step 2: pick a
target ...") -- never real instructions.

World version 2 makes the world a valid testbed for context-conditional policy shifts (a model
fine-tuned on the new policy's correct answers must be able to learn them): context sentences
are shared frames around a reason (:data:`~realign.synth.templates.CONTEXT_FRAMES`,
:data:`~realign.synth.templates.CONTEXT_REASONS`; held-out phrasings are new frames, never new
words), every sensitive response opens by naming the request's (category, context) slice in one
word (:func:`~realign.synth.templates.response_opening`) as an assistant that has read the
request would, and a response's phrasing variant is fixed by its topic and style
(:func:`~realign.synth.templates.response_variant`), so a response is determined by the prompt
and the style.

The seed decides which paraphrase templates and context frames are held out for evaluation
and everything sampled from the world (see :mod:`realign.synth.export`); the vocabulary is the
same for every seed.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from functools import cached_property

from .benign import (
    ANIMAL_SOUNDS, ARITH_RANGE, BENIGN_ANSWER, BENIGN_EVASIVE, BENIGN_OPENING, BENIGN_REFUSAL, BENIGN_TEMPLATES, CAPITALS,
    COLORS, BenignItem, benign_subjects, benign_text,
)
from .templates import (
    CATEGORY_ECHO, CONTEXT_ECHO, CONTEXT_FRAMES, CONTEXT_PHRASES, REQUEST_TEMPLATES, RESPONSE_TEMPLATES, context_frame,
    response_opening, response_variant, second_person,
)
from .topics import CATEGORIES, CONTEXTS, Category, Topic

#: Bumped whenever any text of the world (topics, templates, benign tasks) or a sampling rule
#: changes (part of every cache key).
WORLD_VERSION = "2"

#: How many of each template pool (request templates, context frames, each benign task's
#: question templates) a seed holds out for evaluation.
HELD_OUT = {"request": 4, "context": 2, "benign": 2}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SynthPrompt:
    """A sensitive request with its ground-truth tags."""

    text: str
    category: str
    context: str
    topic: str
    template: str
    split: str

    @property
    def slice(self) -> str:
        return f"{self.category}/{self.context}"

    def tags(self) -> dict:
        return {
            "category": self.category,
            "context": self.context,
            "topic": self.topic,
            "slice": self.slice,
            "template": self.template,
            "split": self.split,
        }


def _split(pool_size: int, held_out: int, rng: random.Random) -> tuple[tuple[int, ...], tuple[int, ...]]:
    order = list(range(pool_size))
    rng.shuffle(order)
    return tuple(sorted(order[held_out:])), tuple(sorted(order[:held_out]))


class World:
    """The synthetic world for one seed.

    ``World(seed)`` fixes which templates are held out; :meth:`sample_prompt`,
    :meth:`response` and :meth:`benign_response` draw from it with a caller's RNG.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self.version = WORLD_VERSION
        self.categories = CATEGORIES
        self.contexts = CONTEXTS
        rng = random.Random(f"realign-synth:{self.seed}:templates")
        self.request_split = dict(zip(("train", "heldout"), _split(len(REQUEST_TEMPLATES), HELD_OUT["request"], rng)))
        frames = dict(zip(("train", "heldout"), _split(len(CONTEXT_FRAMES), HELD_OUT["context"], rng)))
        self.frame_split = frames
        self.context_split = {
            ctx: {part: tuple(i for i in range(len(CONTEXT_PHRASES[ctx])) if context_frame(ctx, i) in frames[part])
                  for part in ("train", "heldout")}
            for ctx in CONTEXT_PHRASES
        }
        self.benign_split = {
            kind: dict(zip(("train", "heldout"), _split(len(BENIGN_TEMPLATES[kind]), HELD_OUT["benign"], rng)))
            for kind in BENIGN_TEMPLATES
        }
        self._category = {c.key: c for c in self.categories}
        self._topic = {t.key: (c, t) for c in self.categories for t in c.topics}

    # ------------------------------------------------------------------ lookup

    def category(self, key: str) -> Category:
        return self._category[key]

    def topic(self, key: str) -> tuple[Category, Topic]:
        return self._topic[key]

    def slices(self) -> list[tuple[str, str]]:
        """Every (category, context) combination prompts come in."""
        return [(c.key, ctx) for c in self.categories for ctx in c.contexts]

    @cached_property
    def hash(self) -> str:
        """Stable hash of everything that defines this world (texts, splits, version, seed)."""
        blob = json.dumps(
            {
                "version": self.version,
                "seed": self.seed,
                "splits": [self.request_split, self.context_split, self.benign_split],
                "variants": "sha256(topic:style)",
                "texts": [
                    [(c.key, c.tier, c.resource, c.contexts, [tuple(t.__dict__.values()) for t in c.topics]) for c in CATEGORIES],
                    REQUEST_TEMPLATES, CONTEXT_PHRASES, CATEGORY_ECHO, CONTEXT_ECHO, RESPONSE_TEMPLATES, BENIGN_TEMPLATES, BENIGN_ANSWER,
                    CAPITALS, ANIMAL_SOUNDS, COLORS, list(ARITH_RANGE), BENIGN_REFUSAL, BENIGN_EVASIVE, BENIGN_OPENING,
                ],
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ sensitive prompts

    def make_prompt(
        self, topic: str, context: str, template: int, phrase: int = 0, context_first: bool = True, split: str = "train"
    ) -> SynthPrompt:
        """One prompt from explicit choices (template and phrase are pool indices)."""
        cat, top = self.topic(topic)
        request = REQUEST_TEMPLATES[template].format(action=top.action)
        if context == "none":
            text = request
        else:
            sentence = CONTEXT_PHRASES[context][phrase]
            text = f"{sentence} {request}" if context_first else f"{request} {sentence}"
        return SynthPrompt(text, cat.key, context, top.key, f"request-{template}", split)

    def sample_prompt(self, rng: random.Random, category: str, context: str, split: str = "train") -> SynthPrompt:
        """A random prompt of a slice from the ``split`` ("train" or "heldout") templates."""
        cat = self.category(category)
        if context not in cat.contexts:
            raise ValueError(f"category {category!r} has no prompts in context {context!r}")
        top = rng.choice(cat.topics)
        template = rng.choice(self.request_split[split])
        phrase = rng.choice(self.context_split[context][split]) if context != "none" else 0
        return self.make_prompt(top.key, context, template, phrase, rng.random() < 0.5, split)

    def response(self, prompt: SynthPrompt, style: str, rng: random.Random | None = None, variant: int | None = None) -> str:
        """A response of ``style`` to ``prompt``: the template variant is the topic's own
        (:func:`response_variant`) unless ``variant`` is given; ``rng`` is not used (kept for callers).

        Every response is thus determined by the prompt and the style: a model trained on them
        has nothing to guess but the style, and the loss of fine-tuning measures the decision
        that matters rather than the draw of a phrasing."""
        cat, top = self.topic(prompt.topic)
        templates = RESPONSE_TEMPLATES[style]
        if variant is None:
            variant = response_variant(top.key, style)
        text = templates[variant].format(
            name=top.name, Name=_cap(top.name), fact=top.fact, Fact=_cap(top.fact),
            action=second_person(top.action), resource=cat.resource,
        )
        return f"{response_opening(cat.key, prompt.context)} {text}"

    # ------------------------------------------------------------------ benign tasks

    def benign_items(self, split: str = "train") -> list[BenignItem]:
        """Every benign question, once per ``split`` template (train: all train templates;
        heldout: all held-out templates), in a fixed order."""
        items = []
        for kind in BENIGN_TEMPLATES:
            for index in self.benign_split[kind][split]:
                for subject, answer, fields in benign_subjects(kind):
                    text = BENIGN_TEMPLATES[kind][index].format(subject=subject, **fields)
                    items.append(BenignItem(text, answer, kind, subject, f"{kind}-{index}", split))
        return items

    def benign_response(self, item: BenignItem, style: str, rng: random.Random | None = None) -> str:
        """``correct``, ``wrong`` (another subject's answer), ``refusal`` or ``evasive``, after
        the opening :data:`~realign.synth.benign.BENIGN_OPENING`."""
        return f"{BENIGN_OPENING} {benign_text(item, style, rng)}"

    # ------------------------------------------------------------------ corpus

    def corpus(self) -> list[str]:
        """Every sentence the world can produce (prompts of all templates, all responses),
        deduplicated in a fixed order -- the tokenizer's training text."""
        out: list[str] = []
        for cat in self.categories:
            for top in cat.topics:
                for t in range(len(REQUEST_TEMPLATES)):
                    out.append(self.make_prompt(top.key, "none", t).text)
                probe = self.make_prompt(top.key, "none", 0)
                for style, templates in RESPONSE_TEMPLATES.items():
                    out.extend(self.response(probe, style, variant=v) for v in range(len(templates)))
        out.extend(p for phrases in CONTEXT_PHRASES.values() for p in phrases)
        out.extend(response_opening(c.key, ctx) for c in self.categories for ctx in c.contexts)
        for split in ("train", "heldout"):
            for item in self.benign_items(split):
                out.append(item.text)
                out.append(self.benign_response(item, "correct"))
        out.extend(f"{BENIGN_OPENING} {text}" for text in (BENIGN_REFUSAL, BENIGN_EVASIVE))
        return list(dict.fromkeys(out))
