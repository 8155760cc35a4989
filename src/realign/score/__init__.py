"""Stage 2, ``realign score`` (config section ``score:``, run folder ``score/``): the alignment
impact score of every conflict record (docs/method.md, "Stage 2 — alignment impact scores").

* :mod:`.run` — the stage on files: its key, inputs, outputs and summary;
* :mod:`.gold` — the gold batch (Alg. 2);
* :mod:`.scoring` — the model at θ_ref, the directions v and each process's share of the scores;
* :mod:`.progress` — the progress files a rerun resumes from;
* :mod:`.weights` — the scoring variants, and scores to weights;
* :mod:`.stage` — the stage as ``realign run`` drives it (:class:`realign.runs.stage.Stage`);
* ℓ_i of a conflict record and the gold objective J's terms are :mod:`realign.objective`, shared
  with Stage 3;
* :mod:`.scorer` — ℓ_i and its derivatives for batches of terms and parameter spaces, in
  layers: :mod:`.term_losses` (ℓ_i, g_J), :mod:`.directional` (the fast path),
  :mod:`.curvature` (Hessian-vector products) and the per-sample paths;
* :mod:`.linalg` — the linear algebra (conjugate gradient) of g_Jᵀ H⁻¹ ∇ℓ_i.
"""
