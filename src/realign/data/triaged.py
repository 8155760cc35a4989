"""What a triaged record means, below every stage that reads one: the decision table that gives a
pair its category (Alg. 1 lines 3-6; the categories are :data:`realign.data.CATEGORIES`), the old
pair a record was triaged from, and the relabelled sets the baselines train on — DPO-Gold and
the naive relabelling — which ``realign triage`` writes (``gold_out``, ``naive_out``) and the
methods ``dpo-gold``, ``naive-oracle-dpo`` and ``rdpo`` build (:mod:`realign.train.methods`)."""

from __future__ import annotations

from typing import Sequence

from . import INVERT, PUNISH, RETAIN, Category, PreferencePair


def categorise(winner_complies: bool, loser_complies: bool) -> Category:
    """Alg. 1 lines 3-6: the triage decision table."""
    if winner_complies:
        return RETAIN
    return INVERT if loser_complies else PUNISH


def old_pair(record: PreferencePair) -> tuple:
    """(x, old y_w, old y_l) of a triaged record, undoing the INVERT swap."""
    if record.swapped:
        return record.prompt, record.rejected, record.chosen
    return record.prompt, record.chosen, record.rejected


def gold_pairs(records: Sequence[PreferencePair]) -> tuple[list[PreferencePair], int]:
    """DPO-Gold relabelled set: RETAIN as is, INVERT swapped, PUNISH as (x, y_c ≻ y_w) when an
    oracle response exists. Returns the pairs and the number of PUNISH pairs excluded."""
    out, excluded = [], 0
    for r in records:
        if r.category == PUNISH:
            if r.oracle is None:
                excluded += 1
                continue
            x, y_w, _ = old_pair(r)
            out.append(PreferencePair(r.id, x, r.oracle, y_w, meta=dict(r.meta)))
        else:
            out.append(PreferencePair(r.id, r.prompt, r.chosen, r.rejected, meta=dict(r.meta)))
    return out, excluded


def naive_pairs(records: Sequence[PreferencePair]) -> list[PreferencePair]:
    """Naive relabelled set (the false dichotomy): swap every pair whose old winner violates."""
    out = []
    for r in records:
        x, y_w, y_l = old_pair(r)
        if r.category == RETAIN:
            out.append(PreferencePair(r.id, x, y_w, y_l, meta=dict(r.meta)))
        else:
            out.append(PreferencePair(r.id, x, y_l, y_w, meta=dict(r.meta)))
    return out
