"""Stage 3, ``realign train`` (config section ``train:``, run folder ``train/<method>/``):
re-alignment training (docs/method.md, "Stage 3 — the hybrid objective").

* :mod:`.methods` — the registry of methods, each turning records into loss terms;
* :mod:`.run` — the stage: records in, the method's terms, training, the saved weights and the summary;
* :mod:`.dataset` — the terms tokenised and batched; :mod:`.loss` — one micro-batch's loss;
  :mod:`.reference` — the reference model's log-probs and pass; :mod:`.trainer` — the Trainer
  (online-dpo's: :mod:`.online`); :mod:`.checkpoints` — resume, checkpoints and the saved weights;
  :mod:`.merge` — ``realign merge``.
* :mod:`.stage` — the stage as ``realign run`` drives it (:class:`realign.runs.stage.Stage`).

The terms, and ℓ_i of a conflict record, are :mod:`realign.objective`; the loss kinds they name are
:data:`realign.objective.losses.LOSS_KINDS`; both are shared with Stage 2.
"""
