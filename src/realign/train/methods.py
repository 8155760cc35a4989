"""Training methods as a registry: how triaged, weighted records become loss terms.

Every method turns records into :class:`Term` s — a kind of loss on one or two responses of a
prompt, a weight and the component it is logged under. The trainer evaluates all terms of a
micro-batch with one policy forward pass and one reference forward pass, whatever their
kinds, so adding a method is one small class and one registry entry; the trainer does not
change.

Term kinds — ``pref`` (ℓ_pref: DPO or IPO), ``npo2`` (dual NPO, L_II), ``npo``, ``ga``, ``kl``
(L_KL) — are the table :data:`realign.losses.LOSS_KINDS` (docs/method.md Stage 3), which the
trainer and Stage 2's scorer both read.

Supervised fine-tuning needs no kind of its own: a ``ga`` term with weight −1 is the mean
negative log-likelihood per token of its response, −log π_θ(y|x)/|y| (see :class:`OracleSFT`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..data import PreferencePair, Text
from ..errors import RealignError
from ..triage import INVERT, PUNISH, RETAIN
from ..triage.relabel import gold_pairs, naive_pairs


@dataclass(frozen=True)
class Term:
    """One loss term: ``kind`` names a :data:`realign.losses.LOSS_KINDS` entry, read on
    (``prompt``, ``first``) and, for two-response kinds, ``second``."""

    kind: str
    prompt: Text
    first: Text
    second: Text | None
    weight: float
    component: str


@dataclass(frozen=True)
class MethodOptions:
    alpha_kl: float = 0.1
    normalise: str = "mean"
    #: weight of L_R, a preference term on RETAIN pairs whose loser violates π_new (0 = off)
    retain_pref: float = 0.0
    #: weight of L_K, the one-sided (keep-only) preference term on those RETAIN pairs (0 = off)
    retain_keep: float = 0.0
    #: a PUNISH pair without y_c: "npo" (dual NPO, the paper) or "exclude" (left out, as DPO-Gold does)
    punish_without_y_c: str = "npo"


class Method:
    """Base class: subclasses set ``name`` and ``description`` and implement :meth:`terms`.
    ``needs_impact``: the method reads Stage 2's impact weights (``realign run`` trains it on
    the scored records)."""

    name = ""
    description = ""
    preference_loss: str | None = None  # forces the preference loss form (else the config's)
    needs_impact = False

    def terms(self, records: Sequence[PreferencePair], options: MethodOptions) -> list[Term]:
        raise NotImplementedError


def _violating(record: PreferencePair, side: str) -> bool:
    verdict = (record.verdicts or {}).get(side) or {}
    return verdict.get("compliant") is False


def _require_triaged(records: Sequence[PreferencePair], method: str) -> None:
    if any(r.category is None for r in records):
        raise RealignError(f"method {method!r} needs triaged records (run `realign triage` first)")


def _uniform(n: int, normalise: str) -> float:
    """The weight every conflict record gets when weights are not used, under the same
    normalisation convention as impact weights (``mean``: 1, ``sum``: 1/|D_conflict|)."""
    return 1.0 if normalise == "mean" else 1.0 / max(1, n)


def _impact(record: PreferencePair, method: str) -> float:
    if record.impact is None:
        raise RealignError(
            f"method {method!r} needs impact weights: record {record.id!r} ({record.category}) has none "
            "(run `realign score` first, or use trace-no-impact)"
        )
    return record.impact


class Trace(Method):
    """L_TRACE = L_I + L_II + α_KL·L_KL (Alg. 1 lines 34-46).

    With ``retain_pref`` = λ_R > 0 (a project extension, off by default) it adds
    L_R = λ_R · ℓ_pref(x, y_w ≻ y_l) on every RETAIN pair whose loser violates π_new: the old
    preference still holds under the new policy (c_w = 1, c_l = 0), and this contrast tells the
    model where the new exceptions stop — the KL term only keeps the kept response likely.
    With ``retain_keep`` = λ_K > 0 it adds L_K = λ_K · ℓ_keep(x, y_w ≻ y_l) on the same pairs
    instead of (or beside) L_R: zero while the pair's margin over π_ref is ≥ 0, so it resists
    the drift of the inversions onto retained prompts without strengthening the old preference
    (docs/method.md Stage 3, "Keeping the retained preferences", with what it measured)."""

    name = "trace"
    description = "TRACE: impact-weighted inversion (INVERT) and dual NPO (PUNISH), KL on RETAIN"
    needs_impact = True
    use_kl = True

    def conflict_weight(self, record: PreferencePair, n_conflict: int, options: MethodOptions) -> float:
        return _impact(record, self.name) if self.needs_impact else _uniform(n_conflict, options.normalise)

    @staticmethod
    def conflict_term(record: PreferencePair, weight: float = 1.0) -> Term:
        """ℓ_i of one conflict record: INVERT — ℓ_pref on the stored (swapped) pair (L_I); PUNISH —
        ℓ_pref on (y_c ≻ y_w) with a compliant response y_c (an oracle's, or a corrective response
        the judge verified: :attr:`PreferencePair.y_c`), treated like INVERT, else dual NPO on both
        responses (L_II). Stage 2 scores exactly this term (docs/method.md Stage 2)."""
        if record.category == INVERT:
            return Term("pref", record.prompt, record.chosen, record.rejected, weight, "L_I")
        if record.y_c is not None:
            return Term("pref", record.prompt, record.y_c, record.chosen, weight, "L_II")
        return Term("npo2", record.prompt, record.chosen, record.rejected, weight, "L_II")

    def terms(self, records, options):
        _require_triaged(records, self.name)
        left_out = options.punish_without_y_c == "exclude"
        conflict = [r for r in records if r.category == INVERT
                    or (r.category == PUNISH and not (left_out and r.y_c is None))]
        kept = {id(r) for r in conflict}
        out = []
        for r in records:
            if id(r) in kept:
                out.append(self.conflict_term(r, self.conflict_weight(r, len(conflict), options)))
            elif r.category == PUNISH:
                continue
            else:
                if self.use_kl and options.alpha_kl > 0:
                    out.append(Term("kl", r.prompt, r.chosen, None, options.alpha_kl, "L_KL"))
                if options.retain_pref > 0 and _violating(r, "rejected"):
                    out.append(Term("pref", r.prompt, r.chosen, r.rejected, options.retain_pref, "L_R"))
                if options.retain_keep > 0 and _violating(r, "rejected"):
                    out.append(Term("keep", r.prompt, r.chosen, r.rejected, options.retain_keep, "L_K"))
        return out


class TraceNoImpact(Trace):
    name = "trace-no-impact"
    description = "TRACE with w = 1 (same normalisation convention), the 'w/o impact weighting' ablation"
    needs_impact = False


class TraceNoKL(Trace):
    name = "trace-no-kl"
    description = "TRACE without the KL term on RETAIN"
    use_kl = False


class TraceNoTriage(Method):
    """U2A-style: impact-weighted NPO on every response the judge found violating, no
    inversion; KL on the chosen response of RETAIN pairs, as in TRACE."""

    name = "trace-no-triage"
    description = "U2A-style: impact-weighted NPO on every violating response, no inversion; KL on RETAIN"
    needs_impact = True

    def terms(self, records, options):
        _require_triaged(records, self.name)
        out = []
        for r in records:
            w = r.impact if r.impact is not None else 1.0
            for side in ("chosen", "rejected"):
                if _violating(r, side):
                    out.append(Term("npo", r.prompt, getattr(r, side), None, w, "L_NPO"))
            if r.category == RETAIN and options.alpha_kl > 0:
                out.append(Term("kl", r.prompt, r.chosen, None, options.alpha_kl, "L_KL"))
        return out


class _PairsAsGiven(Method):
    def pairs(self, records) -> list[PreferencePair]:
        return list(records)

    def terms(self, records, options):
        return [Term("pref", p.prompt, p.chosen, p.rejected, 1.0, "L_pref") for p in self.pairs(records)]


class DPO(_PairsAsGiven):
    name = "dpo"
    description = "DPO on the pairs as stored (chosen ≻ rejected)"
    preference_loss = "dpo"


class IPO(_PairsAsGiven):
    name = "ipo"
    description = "IPO on the pairs as stored (length-averaged log-probs, as TRL)"
    preference_loss = "ipo"


class DPOGold(_PairsAsGiven):
    name = "dpo-gold"
    description = "Oracle-relabelled DPO: RETAIN as is, INVERT swapped, PUNISH with y_c (else excluded)"

    def pairs(self, records):
        _require_triaged(records, self.name)
        return gold_pairs(records)[0]


class NaiveOracleDPO(_PairsAsGiven):
    name = "naive-oracle-dpo"
    description = "Naive relabelling: swap every pair whose old winner violates (the false dichotomy)"

    def pairs(self, records):
        _require_triaged(records, self.name)
        return naive_pairs(records)


class _OnViolating(Method):
    kind = "npo"
    component = "L_NPO"

    def terms(self, records, options):
        _require_triaged(records, self.name)
        out = []
        for r in records:
            for side in ("chosen", "rejected"):
                if _violating(r, side):
                    out.append(Term(self.kind, r.prompt, getattr(r, side), None, 1.0, self.component))
        return out


class NPO(_OnViolating):
    name = "npo"
    description = "Plain NPO on every response the judge found violating"


class GradAscent(_OnViolating):
    name = "grad-ascent"
    description = "Gradient ascent on every response the judge found violating"
    kind = "ga"
    component = "L_GA"


#: The weight that turns a ``ga`` term (+log π_θ(y|x)/|y|, minimised) into the SFT loss
#: −log π_θ(y|x)/|y| (minimised: the response is pushed up).
SFT_WEIGHT = -1.0


def sft_targets(records: Sequence[PreferencePair], method: str = "oracle-sft") -> list[tuple[Text, Text]]:
    """(prompt, the new policy's correct response) for every training prompt of triaged
    records: the chosen response of RETAIN and (stored swapped) INVERT records, the oracle's
    y_c of PUNISH records. A PUNISH record without a y_c has no correct response and is left
    out (as DPO-Gold leaves it out); give the oracle's responses to see every prompt."""
    _require_triaged(records, method)
    out = []
    for r in records:
        if r.category == PUNISH:
            if r.oracle is not None:
                out.append((r.prompt, r.oracle))
        else:
            out.append((r.prompt, r.chosen))
    return out


class OracleSFT(Method):
    """A testbed ceiling check, not a re-alignment method: it needs a fresh label (the new
    policy's correct response) for every training prompt, which is what re-alignment avoids.
    Supervised fine-tuning (NLL) on those responses (:func:`sft_targets`) shows whether the
    model can learn the new policy from the old pairs' prompts at all; a benchmark whose
    ceiling fails a shift cannot rank methods on it."""

    name = "oracle-sft"
    description = ("Testbed ceiling (needs fresh labels, not a re-alignment method): SFT on the new policy's "
                   "correct response for every prompt (RETAIN/INVERT chosen, PUNISH y_c)")

    def terms(self, records, options):
        return [Term("ga", prompt, target, None, SFT_WEIGHT, "L_SFT") for prompt, target in sft_targets(records, self.name)]


METHODS: dict[str, Method] = {
    m.name: m
    for m in (Trace(), TraceNoTriage(), TraceNoImpact(), TraceNoKL(), DPOGold(), NaiveOracleDPO(), DPO(), IPO(), NPO(),
              GradAscent(), OracleSFT())
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise RealignError(f"unknown method {name!r} (known: {', '.join(METHODS)})")
    return METHODS[name]
