"""Training methods as a registry: how triaged, weighted records become loss terms.

Every method turns records into :class:`Term` s — a kind of loss on one or two responses of a
prompt, a weight and the component it is logged under. The trainer evaluates all terms of a
micro-batch with one policy forward pass and one reference forward pass, whatever their
kinds, so adding a method is one small class and one registry entry; the trainer does not
change.

Term kinds — ``pref`` (ℓ_pref: DPO or IPO), ``npo2`` (dual NPO, L_II), ``npo``, ``ga``, ``kl``
(L_KL), ``keep`` (L_K), ``rdpo`` (robust DPO) — are the table :data:`realign.objective.losses.LOSS_KINDS` (docs/method.md Stage 3), which the
trainer and Stage 2's scorer both read.

Supervised fine-tuning needs no kind of its own: a ``ga`` term with weight −1 is the mean
negative log-likelihood per token of its response, −log π_θ(y|x)/|y| (see :class:`OracleSFT`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..data import INVERT, PUNISH, RETAIN, PreferencePair, Text, prompt_text
from ..errors import RealignError
from ..objective import Term, conflict_term
from ..data.triaged import gold_pairs, naive_pairs


@dataclass(frozen=True)
class JudgedSample:
    """A response sampled from the model for an old prompt, with the judge's verdict under the
    new policy (None: the judge abstained). What ``self-distill`` and ``online-dpo`` train on."""

    prompt: Text
    response: str
    compliant: bool | None


@dataclass(frozen=True)
class MethodOptions:
    alpha_kl: float = 0.1
    normalise: str = "mean"
    #: weight of L_R, a preference term on RETAIN pairs whose loser violates π_new (0 = off)
    retain_pref: float = 0.0
    #: weight of L_K, the one-sided (keep-only) preference term on those RETAIN pairs (0 = off)
    retain_keep: float = 0.0
    #: the judged samples of the methods that sample the model (``samples`` set; else empty)
    samples: tuple[JudgedSample, ...] = ()
    #: self-distill: ``sft`` (passed samples) or ``dpo`` (passed over failed samples of a prompt)
    objective: str = "sft"
    #: a PUNISH pair without y_c: "npo" (dual NPO, the paper) or "exclude" (left out, as DPO-Gold does)
    punish_without_y_c: str = "npo"


class Method:
    """Base class: subclasses set ``name`` and ``description`` and implement :meth:`terms`.
    ``needs_impact``: the method reads Stage 2's impact weights (``realign run`` trains it on
    the scored records). ``samples``: the method trains on the model's own judged samples of the
    records' prompts (:attr:`MethodOptions.samples`) instead of the records' responses —
    ``"before"``: drawn once from the starting model before training; ``"online"``: drawn from
    the current model at every step (:mod:`realign.train.sampling`)."""

    name = ""
    description = ""
    preference_loss: str | None = None  # forces the preference loss form (else the config's)
    needs_impact = False
    samples: str | None = None

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
    description = ("TRACE: impact-weighted inversion (INVERT), PUNISH as y_c over the old winner where a corrective "
                   "response y_c was found, else dual NPO; KL on RETAIN")
    needs_impact = True
    use_kl = True

    def conflict_weight(self, record: PreferencePair, n_conflict: int, options: MethodOptions) -> float:
        return _impact(record, self.name) if self.needs_impact else _uniform(n_conflict, options.normalise)

    def terms(self, records, options):
        _require_triaged(records, self.name)
        left_out = options.punish_without_y_c == "exclude"
        conflict = [r for r in records if r.category == INVERT
                    or (r.category == PUNISH and not (left_out and r.y_c is None))]
        kept = {id(r) for r in conflict}
        out = []
        for r in records:
            if id(r) in kept:
                out.append(conflict_term(r, self.conflict_weight(r, len(conflict), options)))
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
    """This project's "w/o triage" ablation: TRACE with its categories taken away and its other
    parts kept. NPO on every response the judge found violating (both of a PUNISH pair, the old
    winner of an INVERT pair, a RETAIN pair's violating loser), no inversion, weighted by Stage 2's
    TRACE scores (1 on RETAIN records, which have none); KL on the chosen response of RETAIN
    pairs, as in TRACE. It is not the reference code's "Punish All" ablation (NPO on the stored
    rejected response of every record, weighted by an NPO impact score of every record, no KL
    term): that needs Stage 2 to score every record with an NPO term, which it does not
    (docs/method.md, "Where we differ")."""

    name = "trace-no-triage"
    description = ("w/o triage (this project's ablation, not the reference's): NPO on every response the judge "
                   "flagged, TRACE's impact weights, no inversion; KL on RETAIN")
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


class RobustDPO(NaiveOracleDPO):
    """rDPO (Chowdhury et al. 2024), the paper's baseline for noisy labels: the robust DPO loss
    (:func:`realign.objective.losses.rdpo_loss`, ε = ``rdpo_epsilon``) on the naive relabelled set, the
    pairs naive-oracle-dpo trains on. That set is the old pairs with the judge's verdicts
    applied and nothing else (no oracle responses, which DPO-Gold needs), so it sees what TRACE
    sees, and its labels flip where the judge (or the triage) errs — rDPO's noise model. Against
    naive-oracle-dpo it isolates the robust loss; against TRACE, what triage and impact weights
    add beyond it (a PUNISH pair swapped to prefer another violating response is a wrong label
    no ε accounts for)."""

    name = "rdpo"
    description = "rDPO: robust DPO (ε = rdpo_epsilon, the assumed label-flip rate) on the naive relabelled set"
    preference_loss = "dpo"

    def terms(self, records, options):
        return [Term("rdpo", p.prompt, p.chosen, p.rejected, 1.0, "L_rDPO") for p in self.pairs(records)]


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


def _by_prompt(samples: Sequence[JudgedSample]) -> dict[str, tuple[Text, list[str], list[str]]]:
    """Per prompt (by its text, in first-seen order): the prompt, its distinct passed and its
    distinct failed responses, each in sample order. Abstentions are neither."""
    out: dict[str, tuple[Text, list[str], list[str]]] = {}
    for s in samples:
        _, passed, failed = out.setdefault(prompt_text(s.prompt), (s.prompt, [], []))
        side = passed if s.compliant else failed if s.compliant is False else None
        if side is not None and s.response not in side:
            side.append(s.response)
    return out


class SelfDistill(Method):
    """Judge-filtered self-distillation, the supervised stage of Constitutional AI (Bai et al.
    2022): sample the starting model on the old prompts (a chat model optionally guided by the new
    policy as its system message), keep what the judge passes, and fine-tune on it — SFT on every
    distinct passed sample (``objective: sft``), or DPO of each passed over a failed sample of the
    same prompt (``dpo``: the i-th distinct passed one over the i-th distinct failed one). It uses
    the records' prompts only: no responses, verdicts or oracle."""

    name = "self-distill"
    description = ("Judge-filtered self-distillation: SFT on the starting model's own samples of the old prompts that "
                   "the judge passes (or DPO of passed over failed)")
    samples = "before"

    def terms(self, records, options):
        out = []
        for prompt, passed, failed in _by_prompt(options.samples).values():
            if options.objective == "dpo":
                out += [Term("pref", prompt, good, bad, 1.0, "L_pref") for good, bad in zip(passed, failed)]
            else:
                out += [Term("ga", prompt, good, None, SFT_WEIGHT, "L_SFT") for good in passed]
        return out


class OnlineDPO(Method):
    """Online DPO with the judge as the labeller (online AI feedback: Guo et al. 2024; RLAIF: Lee
    et al. 2023): at every step two responses per prompt are sampled from the current model and
    judged, and each prompt whose pair the judge splits — one passes, one fails — gives a DPO term
    (passed ≻ failed) against the starting model. A pair both pass or both fail gives nothing (a
    binary judge has no preference between them; the old pair's order is the old policy's, so it
    is not used as a tie-break)."""

    name = "online-dpo"
    description = ("Online DPO with the judge: two samples per prompt from the current model every step, DPO of the "
                   "one the judge passes over the one it fails (ties skipped)")
    preference_loss = "dpo"
    samples = "online"

    def terms(self, records, options):
        return [Term("pref", prompt, passed[0], failed[0], 1.0, "L_pref")
                for prompt, passed, failed in _by_prompt(options.samples).values() if passed and failed]


METHODS: dict[str, Method] = {
    m.name: m
    for m in (Trace(), TraceNoTriage(), TraceNoImpact(), TraceNoKL(), DPOGold(), NaiveOracleDPO(), RobustDPO(), DPO(),
              IPO(), NPO(), GradAscent(), OracleSFT(), SelfDistill(), OnlineDPO())
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise RealignError(f"unknown method {name!r} (known: {', '.join(METHODS)})")
    return METHODS[name]
