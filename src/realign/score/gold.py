"""The gold batch of Stage 2 (Alg. 2; docs/method.md, "Stage 2 — alignment impact scores"):
the records the gold objective J is built from, ⌊B/3⌋ RETAIN, ⌊B/3⌋ INVERT and the rest PUNISH,
drawn seeded, with what is done (and noted) where a category is short of its share."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from ..data import INVERT, PUNISH, RETAIN, PreferencePair
from ..errors import RealignError
from ..objective import Term, gold_term


@dataclass
class GoldBatch:
    samples: list[Term]
    parts: list[str]  # the category each gold sample stands for
    notes: list[str]

    def part(self, category: str) -> list[Term]:
        return [s for s, p in zip(self.samples, self.parts) if p == category]

    def counts(self) -> dict[str, int]:
        return {c: self.parts.count(c) for c in (RETAIN, INVERT, PUNISH)}


def allocate(size: int, available: dict[str, int], remainder: str = "spread") -> dict[str, int]:
    """⌊B/3⌋ RETAIN, ⌊B/3⌋ INVERT, the rest PUNISH (Alg. 2). Where a category has too few
    records: ``spread`` gives its unfilled share to the others, round robin (the default, so a
    short PUNISH part is filled too); ``punish`` is Alg. 2 and the reference code, B_P = B − |D_gold|:
    PUNISH takes the whole remainder after RETAIN and INVERT, and a short PUNISH part stays short."""
    nominal = {RETAIN: size // 3, INVERT: size // 3, PUNISH: size - 2 * (size // 3)}
    take = {c: min(nominal[c], available[c]) for c in nominal}
    if remainder == "punish":
        take[PUNISH] = min(available[PUNISH], size - take[RETAIN] - take[INVERT])
        return take
    deficit = size - sum(take.values())
    while deficit > 0:
        spare = [c for c in (RETAIN, INVERT, PUNISH) if take[c] < available[c]]
        if not spare:
            break
        for c in spare:
            if deficit == 0:
                break
            take[c] += 1
            deficit -= 1
    return take


def _shortfall(size: int, available: dict[str, int], take: dict[str, int]) -> str | None:
    """One line when the gold batch is not Alg. 2's ⌊B/3⌋ / ⌊B/3⌋ / rest: fewer records than
    ``gold_size`` (what is used instead, and how to set the size), or a category short of its
    share (which categories took its places). None when every category got its share."""
    nominal = allocate(size, {c: size for c in take})
    used = sum(take.values())
    counts = ", ".join(f"{available[c]} {c}" for c in (RETAIN, INVERT, PUNISH))
    if used < size:
        return (f"gold batch: {used} samples, not gold_size {size}: the data has only {counts} usable records, so all "
                f"are used; set gold_size to {used} or less to say so (--gold-size, gold_size in a score config, "
                "score: {gold_size: N} in a run config)")
    short = [c for c in take if take[c] < nominal[c]]
    if not short:
        return None
    extra = [f"{c} +{take[c] - nominal[c]}" for c in take if take[c] > nominal[c]]
    return ("gold batch: " + ", ".join(f"{c} has {take[c]} of its {nominal[c]} samples ({available[c]} available)"
                                        for c in short)
            + f"; the other categories took the rest ({', '.join(extra)})")


def build_gold_batch(records: Sequence[PreferencePair], size: int, seed: int, remainder: str = "spread",
                     punish: str = "compliant") -> GoldBatch:
    """Alg. 2: RETAIN pairs as they are, swapped INVERT pairs, and PUNISH prompts paired as
    (x, y ~ Uniform(Y_compliant), old y_w), where Y_compliant = chosen of RETAIN ∪ chosen of
    swapped INVERT — or, with ``punish`` "own-y_c", as (x, y_c, old y_w) where the record has a
    compliant response of its own (an oracle's or a corrective one): a response drawn from other
    prompts shows the old behaviour (mostly refusals) where the shift asks for a new one, and
    would score the y_c terms against their own direction. Seeded; a shortfall is redistributed
    as ``remainder`` says (:func:`allocate`) and noted."""
    rng = random.Random(seed)
    by = {c: [r for r in records if r.category == c] for c in (RETAIN, INVERT, PUNISH)}
    compliant = [r.chosen for r in by[RETAIN]] + [r.chosen for r in by[INVERT]]
    notes = []
    available = {c: len(v) for c, v in by.items()}
    if not compliant:
        available[PUNISH] = 0
        if by[PUNISH]:
            notes.append("no RETAIN or INVERT records: no compliant responses to pair PUNISH prompts with")
    take = allocate(size, available, remainder)
    if sum(take.values()) == 0:
        raise RealignError("gold batch: no usable records (need RETAIN or INVERT records)")
    note = _shortfall(size, available, take)
    if note is not None:
        notes.append(note)
    samples, parts = [], []
    for r in rng.sample(by[RETAIN], take[RETAIN]):
        samples.append(gold_term(r.prompt, r.chosen, r.rejected))
        parts.append(RETAIN)
    for r in rng.sample(by[INVERT], take[INVERT]):
        samples.append(gold_term(r.prompt, r.chosen, r.rejected))
        parts.append(INVERT)
    for r in rng.sample(by[PUNISH], take[PUNISH]):
        own = r.y_c if punish == "own-y_c" else None
        samples.append(gold_term(r.prompt, own if own is not None else rng.choice(compliant), r.chosen))  # chosen = y_w
        parts.append(PUNISH)
    return GoldBatch(samples, parts, notes)
