"""The objective Stage 2 scores and Stage 3 trains, below both: a loss term (:class:`Term`), ℓ_i of
a conflict record (:func:`conflict_term`) and a sample of the gold objective J (:func:`gold_term`).
Stage 2's impact score of a record is the influence of up-weighting its ℓ_i on J (docs/method.md
Stage 2); TRACE trains the same ℓ_i (:class:`realign.train.methods.Trace`), so what is scored is
what is trained. The loss each term's ``kind`` computes is :data:`realign.objective.losses.LOSS_KINDS`
(:mod:`.losses`: the loss primitives and the one table of loss kinds)."""

from __future__ import annotations

from dataclasses import dataclass

from ..data import INVERT, PreferencePair, Text


@dataclass(frozen=True)
class Term:
    """One loss term: ``kind`` names a :data:`realign.objective.losses.LOSS_KINDS` entry, read on
    (``prompt``, ``first``) and, for two-response kinds, ``second``."""

    kind: str
    prompt: Text
    first: Text
    second: Text | None
    weight: float
    component: str


def conflict_term(record: PreferencePair, weight: float = 1.0) -> Term:
    """ℓ_i of one conflict record: INVERT — ℓ_pref on the stored (swapped) pair (L_I); PUNISH —
    ℓ_pref on (y_c ≻ y_w) with a compliant response y_c (an oracle's, or a corrective response
    the judge verified: :attr:`PreferencePair.y_c`), treated like INVERT, else dual NPO on both
    responses (L_II). Stage 2 scores exactly this term; the TRACE methods train it (docs/method.md
    Stage 2)."""
    if record.category == INVERT:
        return Term("pref", record.prompt, record.chosen, record.rejected, weight, "L_I")
    if record.y_c is not None:
        return Term("pref", record.prompt, record.y_c, record.chosen, weight, "L_II")
    return Term("npo2", record.prompt, record.chosen, record.rejected, weight, "L_II")


def gold_term(prompt: Text, chosen: Text, rejected: Text) -> Term:
    """One sample of the gold objective J: ℓ_pref on (chosen ≻ rejected) (docs/method.md Stage 2)."""
    return Term("pref", prompt, chosen, rejected, 1.0, "J")
