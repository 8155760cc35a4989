"""What an evaluation measures on a model state and how its numbers are read back — the contract
between ``realign eval``, which writes metrics.json, and ``realign report``, the summaries and the
benchmarks, which read it (docs/evaluation.md for what each metric means).

* :mod:`.table` — the metrics by name: what each computes from a model state's outcomes, where
  it lands in metrics.json, and which of its numbers the reports show (docs/extending.md,
  "A metric");
* :mod:`.stats` — rates with Wilson 95 % intervals, the unit of every metric, and their readers;
* :mod:`.tpa` — target policy agreement per slice and the response styles it reads;
* :mod:`.prompts` — the eval prompt format, and the slices a policy change changed;
* :mod:`.costs` — what a trained run spent (train_summary.json's ``budget``), which the report
  shows beside the quality.
"""
