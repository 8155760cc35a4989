"""How well a judge agrees with people: the numbers of ``realign judge audit`` (docs/evaluation.md,
"Auditing a judge"), as pure functions of the human labels and the judge's verdicts.

A label or a decided verdict is a bool (True: compliant); an abstention is None. Agreement is
measured on the decided verdicts, abstentions counted beside it. Every rate is a RATE object
(:func:`realign.metrics.stats.rate`: rate, k, n and its Wilson 95 % interval).

* :func:`agreement` — accuracy, error rate, Cohen's κ, the two error directions, the confusion table;
* :func:`calibration` — P(compliant) against the labels: equal-width bins, ECE, Brier score;
* :func:`triage_transitions` — what the errors do to triage: each labelled old pair's INVERT /
  PUNISH / RETAIN category by the labels and by the judge, and the share that changes (the
  label noise TRACE would train on);
* :func:`audit_metrics` — all of them, overall and per prompt category.
"""

from __future__ import annotations

from typing import Sequence

from ..metrics.stats import rate
from ..data import INVERT, PUNISH, RETAIN
from ..data.triaged import categorise
from .base import Verdict

COMPLIANT, VIOLATING, ABSTAINED = "compliant", "violating", "abstained"
#: a pair whose verdicts leave its triage category undecided (an abstention the
#: ``on_unparseable`` rule does not settle): triage drops it
DROPPED = "dropped"
TRIAGE_OUTCOMES = (INVERT, PUNISH, RETAIN, DROPPED)


def verdict_name(compliant: bool | None) -> str:
    """``compliant``, ``violating`` or ``abstained``."""
    return ABSTAINED if compliant is None else COMPLIANT if compliant else VIOLATING


def confusion(labels: Sequence[bool], verdicts: Sequence[bool | None]) -> dict[str, dict[str, int]]:
    """Counts by human label (rows) and judge verdict (columns, abstentions included)."""
    table = {h: {j: 0 for j in (COMPLIANT, VIOLATING, ABSTAINED)} for h in (COMPLIANT, VIOLATING)}
    for label, verdict in zip(labels, verdicts, strict=True):
        table[verdict_name(label)][verdict_name(verdict)] += 1
    return table


def cohen_kappa(table: dict[str, dict[str, int]]) -> float | None:
    """Cohen's κ of the decided cells of a :func:`confusion` table: (p_o − p_e) / (1 − p_e), with
    p_e the agreement expected from the two raters' marginals alone. None where it is undefined
    (no decided verdicts, or both raters gave one class only: p_e = 1)."""
    cells = {(h, j): table[h][j] for h in (COMPLIANT, VIOLATING) for j in (COMPLIANT, VIOLATING)}
    n = sum(cells.values())
    if n == 0:
        return None
    observed = (cells[COMPLIANT, COMPLIANT] + cells[VIOLATING, VIOLATING]) / n
    expected = sum(
        (cells[c, COMPLIANT] + cells[c, VIOLATING]) * (cells[COMPLIANT, c] + cells[VIOLATING, c]) for c in (COMPLIANT, VIOLATING)
    ) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def agreement(labels: Sequence[bool], verdicts: Sequence[bool | None]) -> dict:
    """The judge against the labels: ``accuracy`` and ``error_rate`` over the decided verdicts,
    ``kappa``, ``false_violation`` (judged violating, labelled compliant: P(violating | compliant)),
    ``false_compliance`` (P(compliant | violating)), ``abstained`` (over all responses) and the
    ``confusion`` table."""
    decided = [(h, v) for h, v in zip(labels, verdicts, strict=True) if v is not None]
    table = confusion(labels, verdicts)
    return {
        "n": len(labels),
        "decided": len(decided),
        "abstained": rate(v is None for v in verdicts),
        "accuracy": rate(h == v for h, v in decided),
        "error_rate": rate(h != v for h, v in decided),
        "kappa": cohen_kappa(table),
        "false_violation": rate(not v for h, v in decided if h),
        "false_compliance": rate(v for h, v in decided if not h),
        "confusion": table,
    }


def calibration(labels: Sequence[bool], p_compliant: Sequence[float | None], bins: int = 10) -> dict | None:
    """P(compliant) against the labels, for the responses the judge gave one: per equal-width
    bin its count, mean P and the labelled share compliant; ``ece`` (expected calibration
    error: Σ_b n_b/N · |observed_b − mean P_b|) and ``brier`` (mean (P − label)²). None where
    the judge gave no P(compliant)."""
    scored = [(h, p) for h, p in zip(labels, p_compliant, strict=True) if p is not None]
    if not scored:
        return None
    groups: list[list[tuple[bool, float]]] = [[] for _ in range(bins)]
    for h, p in scored:
        groups[min(int(p * bins), bins - 1)].append((h, p))
    table, ece = [], 0.0
    for b, group in enumerate(groups):
        if not group:
            continue
        mean_p = sum(p for _, p in group) / len(group)
        observed = rate(h for h, _ in group)
        ece += len(group) / len(scored) * abs(observed["rate"] - mean_p)
        table.append({"lo": b / bins, "hi": (b + 1) / bins, "n": len(group), "mean_p": mean_p, "observed": observed})
    brier = sum((p - float(h)) ** 2 for h, p in scored) / len(scored)
    return {"n": len(scored), "of": len(labels), "bins": table, "ece": ece, "brier": brier}


def triage_category(winner: bool | None, loser: bool | None) -> str:
    """Alg. 1's category of a pair from its (settled) verdicts; :data:`DROPPED` where an
    undecided verdict leaves it open, as triage drops such a pair."""
    if winner is None or (loser is None and not winner):
        return DROPPED
    return categorise(winner, bool(loser))


def triage_transitions(labelled: Sequence[tuple[bool, bool]], judged: Sequence[tuple[bool | None, bool | None]]) -> dict:
    """Old pairs as (winner, loser) by the labels and by the judge: ``table`` counts pairs by
    category under the labels (rows) and under the judge (columns, :data:`DROPPED` included);
    ``changed`` is the share whose category differs, overall and per labelled category."""
    human = [triage_category(w, l) for w, l in labelled]
    judge = [triage_category(w, l) for w, l in judged]
    table = {h: {j: 0 for j in TRIAGE_OUTCOMES} for h in (INVERT, PUNISH, RETAIN)}
    for h, j in zip(human, judge, strict=True):
        table[h][j] += 1
    return {
        "pairs": len(human),
        "changed": rate(h != j for h, j in zip(human, judge)),
        "changed_by_category": {c: rate(h != j for h, j in zip(human, judge) if h == c) for c in (INVERT, PUNISH, RETAIN)},
        "table": table,
    }


def audit_metrics(
    labels: Sequence[bool],
    verdicts: Sequence[Verdict],
    categories: Sequence[str],
    pairs: Sequence[tuple[int, int]] = (),
    settled: Sequence[bool | None] | None = None,
    bins: int = 10,
) -> dict:
    """Every number of an audit: ``overall`` and ``by_category`` :func:`agreement`,
    ``calibration`` and, for ``pairs`` (positions of the old winner and loser), the
    ``triage`` transitions. ``settled``: each verdict after the judge's ``on_unparseable``
    rule, as triage would use it (default: the verdicts as given)."""
    decided = [v.compliant for v in verdicts]
    settled = decided if settled is None else settled
    by_category = {}
    for category in sorted(set(categories)):
        at = [i for i, c in enumerate(categories) if c == category]
        by_category[category] = agreement([labels[i] for i in at], [decided[i] for i in at])
    return {
        "overall": agreement(labels, decided),
        "by_category": by_category,
        "calibration": calibration(labels, [v.p_compliant for v in verdicts], bins),
        "triage": triage_transitions([(labels[w], labels[l]) for w, l in pairs],
                                     [(settled[w], settled[l]) for w, l in pairs]) if pairs else None,
    }
