"""What a run spent — the budget a trained method's ``train_summary.json`` records (written by
``realign train``, read by ``realign report`` and the benchmarks): the cost names, in the order
the report's columns show them, and where a budget's judge calls come from."""

COSTS = ("judge_calls", "generated_tokens", "training_tokens", "wall_s")
#: ``judge_calls_from`` of a method that judges its own samples (self-distill, online-dpo)
FROM_SAMPLES = "this method's samples"
#: ``judge_calls_from`` of a method trained on a triage: the triage's judgements of its records
FROM_TRIAGE = "the triage of its records"
