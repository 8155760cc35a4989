"""Stage 2, ``realign score`` (config section ``score:``, run folder ``score/``): the alignment
impact score of every conflict record (docs/method.md, "Stage 2 — alignment impact scores").

* :mod:`.run` — the stage: gold batch, scoring variants, weights, resume, outputs;
* :mod:`.stage` — the stage as ``realign run`` drives it (:class:`realign.stage.Stage`);
* ℓ_i of a conflict record and the gold objective J's terms are :mod:`realign.objective`, shared
  with Stage 3;
* :mod:`.scorer` — ℓ_i and its derivatives for batches of terms and parameter spaces, in
  layers: :mod:`.term_losses` (ℓ_i, g_J), :mod:`.directional` (the fast path),
  :mod:`.curvature` (Hessian-vector products) and the per-sample paths;
* :mod:`.linalg` — the linear algebra (conjugate gradient) of g_Jᵀ H⁻¹ ∇ℓ_i.
"""
