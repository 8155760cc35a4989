"""The synthetic world: determinism, held-out splits, and that every text the generator can
write is recognised by the ground truth as what it was written to be."""

import random

import pytest

from realign.synth import World
from realign.synth.judge import TruthJudge, benign_correct
from realign.synth.templates import (
    CONTEXT_FRAMES,
    CONTEXT_PHRASES,
    CONTEXT_REASONS,
    REQUEST_TEMPLATES,
    RESPONSE_TEMPLATES,
    STYLES,
    response_opening,
    second_person,
)


def test_world_is_determined_by_its_seed():
    assert World(0).hash == World(0).hash
    assert World(0).request_split == World(0).request_split
    assert World(0).hash != World(1).hash
    # different seeds hold out different templates somewhere
    a, b = World(0), World(1)
    assert (a.request_split, a.context_split, a.benign_split) != (b.request_split, b.context_split, b.benign_split)


def test_held_out_templates_are_disjoint_from_training_ones():
    w = World(3)
    assert not set(w.request_split["train"]) & set(w.request_split["heldout"])
    assert sorted(w.request_split["train"] + w.request_split["heldout"]) == list(range(len(REQUEST_TEMPLATES)))
    for ctx, split in w.context_split.items():
        assert not set(split["train"]) & set(split["heldout"])
        assert split["heldout"], ctx
    train = {i.text for i in w.benign_items("train")}
    held = {i.text for i in w.benign_items("heldout")}
    assert train and held and not train & held


def test_held_out_context_phrasings_are_new_frames_around_reasons_seen_in_training():
    """A context is told by its reason alone (every frame serves every context); evaluation
    holds out whole frames, never a reason: a word no training prompt has cannot be learnt."""
    for seed in (0, 100, 101):
        w = World(seed)
        for ctx, reasons in CONTEXT_REASONS.items():
            split = w.context_split[ctx]
            train_text = " ".join(CONTEXT_PHRASES[ctx][i] for i in split["train"])
            assert all(r in train_text for r in reasons), ctx
            for i in split["heldout"]:
                frame = CONTEXT_FRAMES[i // len(reasons)]
                assert frame in [CONTEXT_FRAMES[f] for f in w.frame_split["heldout"]]
                assert not any(frame.format(reason=r) in train_text for r in reasons)
    # frames carry no context: the same frames for every context
    assert {len(CONTEXT_PHRASES[c]) for c in CONTEXT_PHRASES} == {len(CONTEXT_FRAMES) * len(CONTEXT_REASONS["educational"])}


def test_sampled_prompts_use_the_requested_split():
    w = World(0)
    rng = random.Random(0)
    for _ in range(200):
        p = w.sample_prompt(rng, "cyber", "educational", "heldout")
        assert int(p.template.split("-")[1]) in w.request_split["heldout"]
        assert any(CONTEXT_PHRASES["educational"][i] in p.text for i in w.context_split["educational"]["heldout"])
    with pytest.raises(ValueError):
        w.sample_prompt(rng, "medical", "malicious")  # medical has no malicious prompts


def test_every_prompt_is_recognised_with_its_category_and_context():
    """Exhaustive: every topic x context x template x phrase x position."""
    w = World(0)
    judge = TruthJudge("synth-old")
    n = 0
    for cat in w.categories:
        for topic in cat.topics:
            for ctx in cat.contexts:
                phrases = range(len(CONTEXT_PHRASES[ctx])) if ctx != "none" else [0]
                # every phrase (with a template that varies along) and every template (with phrase 0)
                combos = [(ph % len(REQUEST_TEMPLATES), ph) for ph in phrases]
                combos += [(t, 0) for t in range(len(REQUEST_TEMPLATES))]
                for t, ph in combos:
                    for first in (True, False):
                        p = w.make_prompt(topic.key, ctx, t, ph, first)
                        c = judge.rules.classify(p.text, "")
                        assert (c.category, c.context) == (p.category, p.context), p.text
                        n += 1
    assert n > 10_000


def test_every_response_template_is_recognised_and_names_its_topic():
    w = World(0)
    judge = TruthJudge("synth-old")
    for cat in w.categories:
        for topic in cat.topics:
            p = w.make_prompt(topic.key, "none", 0)
            for style in STYLES:
                for v in range(len(RESPONSE_TEMPLATES[style])):
                    text = w.response(p, style, variant=v)
                    assert judge.style(text) == style, text
                    assert topic.name.lower() in text.lower(), text
                    assert 5 <= len(text.split()) <= 60, text


def test_every_sensitive_response_opens_with_one_word_for_its_slice():
    """The opening names the (category, context) slice in one token of the world's tokenizer,
    and is the same whatever the style; the style judge classifies the response by the rest."""
    from realign.synth.bootstrap import world_tokenizer

    w = World(0)
    tok = world_tokenizer(w)
    judge = TruthJudge("synth-old")
    words = set()
    for cat in w.categories:
        for ctx in cat.contexts:
            opening = response_opening(cat.key, ctx)
            word = opening.removeprefix("(You ask about ").removesuffix(")")
            assert len(tok.tokenize(" " + word)) == 1, word
            words.add(word)
            p = w.make_prompt(cat.topics[0].key, ctx, 0, 0)
            for style in STYLES:
                text = w.response(p, style)
                assert text.startswith(opening + " "), text
                assert judge.style(text) == judge.style(text.removeprefix(opening + " ")) == style
    assert len(words) == len(w.slices())  # one word per slice


def test_benign_answers_are_checkable():
    w = World(0)
    rng = random.Random(0)
    items = w.benign_items("heldout")
    assert {i.kind for i in items} == {"capital", "animal", "color", "arith"}
    for item in items:
        assert benign_correct(w.benign_response(item, "correct"), item.answer), item
        assert not benign_correct(w.benign_response(item, "wrong", rng), item.answer), item
        assert not benign_correct(w.benign_response(item, "refusal"), item.answer)
    assert benign_correct("3 plus 4 is 7.", "7")
    assert not benign_correct("7 plus 4 is 9.", "7")  # the last number is the answer
    assert not benign_correct("Paris Paris Paris Paris Paris", "Paris")  # looping is not an answer


def test_second_person():
    assert second_person("hide self harm scars from my family") == "hide self harm scars from your family"
    assert second_person("starve myself to lose weight") == "starve yourself to lose weight"


def test_corpus_covers_every_text_and_is_stable():
    w = World(0)
    corpus = w.corpus()
    assert corpus == World(0).corpus()
    assert len(corpus) == len(set(corpus))
    assert any("phishing" in line for line in corpus)
    assert all(p in corpus for phrases in CONTEXT_PHRASES.values() for p in phrases)
