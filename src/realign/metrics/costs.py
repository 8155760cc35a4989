"""What a run spent — the budget a trained method's ``train_summary.json`` records (written by
``realign train``, read by ``realign report`` and the benchmarks): the cost names, in the order
the report's columns show them, where a budget's judge calls come from, and what a triage's
corrective search spent."""

from .stats import number

COSTS = ("judge_calls", "generated_tokens", "training_tokens", "wall_s")
#: ``judge_calls_from`` of a method that judges its own samples (self-distill, online-dpo)
FROM_SAMPLES = "this method's samples"
#: ``judge_calls_from`` of a method trained on a triage: the triage's judgements of its records
FROM_TRIAGE = "the triage of its records"


def corrective_spent(triage: dict | None) -> dict[str, float | None]:
    """What the corrective search of a triage (its summary, ``triage``) spent, as costs: the
    candidates judged (``judge_calls``) and the tokens generated, summed over its sources; 0 for
    a triage without a search, None for a cost a source did not record (a search recorded
    before its candidates judged were)."""
    corrective = (triage or {}).get("corrective")
    sources = corrective.get("sources") if isinstance(corrective, dict) else None
    spent = [s for s in sources.values() if isinstance(s, dict)] if isinstance(sources, dict) else []
    totals: dict[str, float | None] = {}
    for name, key in (("judge_calls", "judged"), ("generated_tokens", "generated_tokens")):
        each = [number(s.get(key)) for s in spent]
        totals[name] = None if None in each else float(sum(each))
    return totals
