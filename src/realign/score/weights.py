"""How Stage 2's scores become weights (Alg. 1 lines 28-31): the scoring variants
(:data:`VARIANTS`), clamping and normalising within groups, the weights put on the records, and
the summary's account of the scores and weights per category."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence

from ..data import CONFLICT, PreferencePair, prompt_text, response_text


@dataclass(frozen=True)
class Variant:
    """How scores become weights. ``split``: each conflict category is scored against the
    gradient of its own part of the gold batch (else all against the whole gold objective).
    ``scope``: normalise over all of D_conflict ("global") or within each category.
    ``measure``: the score, ``dot`` ⟨v, ∇ℓ_i⟩ (Alg. 1 lines 18-27) or ``cosine`` ⟨v, ∇ℓ_i⟩/‖∇ℓ_i‖.
    ``gold_remainder``: where a short category's share of the gold batch goes (:func:`.gold.allocate`).
    ``nonpositive``: the weights of a group whose scores are all ≤ 0 (:func:`normalise`)."""

    name: str
    split: bool
    scope: str
    description: str
    measure: str = "dot"
    gold_remainder: str = "spread"
    nonpositive: str = "uniform"


VARIANTS = {
    "paper": Variant("paper", False, "global", "one gold objective, dot product, clamp, one normalisation",
                     gold_remainder="punish", nonpositive="zero"),
    "per-category": Variant(
        "per-category", True, "category", "each category against its own gold part, normalised within category"
    ),
    # docs/method.md, "Where we differ": the dot product is dominated by gradient size (records with a
    # low-probability harmful response have ~6x larger gradients), so divide it out.
    "cosine": Variant(
        "cosine", False, "global", "one gold objective, ⟨v, ∇ℓ_i⟩ / ‖∇ℓ_i‖, clamp, one normalisation",
        measure="cosine",
    ),
}


def normalise(scores: dict[str, float], groups: dict[str, str], mode: str,
              nonpositive: str = "uniform") -> tuple[dict[str, float], list[str]]:
    """Clamp at 0 and normalise within each group: ``sum`` — the whole set sums to 1, each
    group in proportion to its size (one group: the reference code); ``mean`` — each group
    averages 1. A group whose scores are all ≤ 0 has nothing to normalise (Alg. 1 divides by
    their sum): ``nonpositive="uniform"`` gives it uniform weights, so it still trains;
    ``"zero"`` (the reference code) leaves its weights 0, so its terms do not train. Noted."""
    notes = []
    total = len(scores)
    weights: dict[str, float] = {}
    for group in sorted(set(groups.values())):
        ids = [i for i in scores if groups[i] == group]
        clamped = {i: max(0.0, scores[i]) for i in ids}
        mass = sum(clamped.values())
        if mass <= 0.0 and nonpositive == "zero":
            notes.append(f"{group}: all {len(ids)} scores are <= 0; their weights are 0 (the reference code's "
                         "outcome, --variant paper), so their terms will not train")
            weights.update(dict.fromkeys(ids, 0.0))
            continue
        if mass <= 0.0:
            notes.append(f"{group}: all {len(ids)} scores are <= 0; using uniform weights")
            clamped = {i: 1.0 for i in ids}
            mass = float(len(ids))
        scale = (len(ids) / total) / mass if mode == "sum" else len(ids) / mass
        weights.update({i: w * scale for i, w in clamped.items()})
    return weights, notes


def weight_stats(values: Sequence[float], total: float | None = None) -> dict:
    """Distribution of one category's scores or weights; with ``total`` (the sum over every
    category) also ``share``, the category's share of it."""
    if not values:
        return {"n": 0, **({"share": 0.0} if total is not None else {})}
    ordered = sorted(values)
    shared = {"share": sum(values) / total if total else 0.0} if total is not None else {}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "std": statistics.pstdev(values),
        "min": ordered[0],
        "median": ordered[len(ordered) // 2],
        "max": ordered[-1],
        "fraction_zero": sum(v == 0.0 for v in values) / len(values),
        **shared,
    }


def histogram(values: Sequence[float], bins: int = 20) -> dict:
    if not values:
        return {"edges": [], "counts": []}
    lo, hi = min(values), max(values)
    width = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / width))] += 1
    return {"edges": [lo + k * width for k in range(bins + 1)], "counts": counts}


def weigh(config, variant: Variant, records: list[PreferencePair], conflict: list[PreferencePair],
           scores: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """Clamp and normalise the scores into weights (Alg. 1 lines 28-31) and put them on the
    records (RETAIN: none); the weights and the notes on groups that got uniform weights."""
    groups = {r.id: (r.category if variant.scope == "category" else "conflict") for r in conflict}
    weights, notes = normalise({r.id: scores[r.id] for r in conflict}, groups, config.normalise, variant.nonpositive)
    for r in records:
        r.impact = weights.get(r.id) if r.category in CONFLICT else None
        if r.category in CONFLICT:
            r.meta = {**r.meta, "impact_score": scores[r.id]}
    return weights, notes


def describe(conflict: list[PreferencePair], scores: dict[str, float], weights: dict[str, float]) -> dict:
    """The summary's account of the scores and weights per category, and the extreme records."""
    ranked = sorted(conflict, key=lambda r: scores[r.id])

    def example(r: PreferencePair) -> dict:
        return {"id": r.id, "category": r.category, "score": scores[r.id], "weight": weights[r.id],
                "prompt": prompt_text(r.prompt)[:160], "chosen": response_text(r.chosen)[:160]}

    return {
        "scores": {c: weight_stats([scores[r.id] for r in conflict if r.category == c]) for c in CONFLICT},
        "weights": {c: weight_stats([weights[r.id] for r in conflict if r.category == c],
                                    total=sum(weights[r.id] for r in conflict)) for c in CONFLICT},
        "histogram": {c: histogram([weights[r.id] for r in conflict if r.category == c]) for c in CONFLICT},
        "highest": [example(r) for r in ranked[::-1][:5]],
        "lowest": [example(r) for r in ranked[:5]],
    }
