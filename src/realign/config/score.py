"""Stage 2's config (``realign score``) and the parameter space its scores are taken in."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from .base import StrictModel


class ParamSpaceConfig(StrictModel):
    """Which parameters the impact scores are taken in (issue: "parameter space")."""

    kind: Literal["lora", "modules"] = Field(
        "lora",
        description="lora: a fresh adapter's parameters (as the reference code; lora_A gradients are zero at "
        "initialisation, so scores live in the lora_B subspace). modules: the model's own weights "
        "selected by name patterns or the last k blocks (for full fine-tuning).",
    )
    lora_r: int = Field(32, ge=1, description="LoRA rank (the authors' reference code uses 32).")
    lora_alpha: int = Field(16, ge=1, description="LoRA alpha (reference default 16).")
    lora_targets: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], description="LoRA target modules.")
    modules: list[str] = Field(default_factory=list, description="modules: regexes on parameter names.")
    last_k_blocks: int | None = Field(None, ge=1, description="modules: every parameter of the last k blocks.")


class ScoreConfig(StrictModel):
    """Stage 2 (Alg. 1 lines 9-31, Alg. 2): alignment impact scores of conflict records."""

    model: str = Field(..., description="θ_ref: hub id or local path of the model to re-align.")
    adapter: str | None = Field(None, description="PEFT adapter on top of the model (part of θ_ref).")
    data: str = Field(..., description="Triaged records (from `realign triage`).")
    invert_order: Literal["original", "swapped"] | None = Field(
        None, description="How INVERT records from elsewhere store their pair when a record does not say "
        "(no `swapped` field): original (chosen = the old winner) or swapped (chosen = the compliant response).")
    out: Path = Field(..., description="Weighted records (JSONL): the input with `impact` on conflict records.")
    gold_data: str | None = Field(None, description="Triaged records to draw the gold batch from (default: data).")
    gold_size: int = Field(64, ge=3, description="Gold batch size B (reference default 64).")
    gold_punish: Literal["compliant", "own-y_c"] = Field(
        "own-y_c", description="PUNISH samples of the gold batch: own-y_c (default, chosen with corrective responses on "
        "the validation split) pairs a record that has y_c (an oracle's or a corrective response) with it; compliant "
        "draws a compliant response of another prompt (Alg. 2 as published). The same when no record has y_c.")
    seed: int = Field(0, description="Seed for the gold batch and the fresh adapter.")
    beta: float = Field(0.3, gt=0, description="β of the preference and NPO losses.")
    preference_loss: Literal["dpo", "ipo"] = Field("dpo", description="ℓ_pref: DPO form (reference) or IPO.")
    variant: Literal["paper", "per-category", "cosine"] = Field(
        "cosine",
        description="Default cosine: chosen on the validation split of benchmarks/efficacy.py on world version 1 "
        "(commit 42edcf1), not re-selected since (docs/method.md, 'Lessons measured'). "
        "paper: the published recipe: one gold objective whose short categories' share goes to PUNISH (Alg. 2), dot "
        "products, one global normalisation (all scores <= 0: weights 0, as the reference code). per-category: INVERT and PUNISH records "
        "are each scored against their own part of the gold batch and normalised within their category. "
        "cosine: as paper with the score divided by the record's gradient norm, ⟨v, ∇ℓ_i⟩ / ‖∇ℓ_i‖, so "
        "records with large gradients (e.g. a low-probability harmful response) do not dominate, and a short gold "
        "category's share spread over the other two (also per-category).",
    )
    hessian: Literal["identity", "cg"] = Field("identity", description="identity: H ≈ γI (paper). cg: solve (H+γI)v = g_J.")
    hvp: Literal["exact", "gauss-newton"] = Field("gauss-newton", description="cg: Hessian-vector product kind.")
    damping: float = Field(1.0, gt=0, description="γ (identity: scale only; cg: damping).")
    cg_iters: int = Field(20, ge=1, description="cg: most iterations.")
    cg_tol: float = Field(1e-3, gt=0, description="cg: stop at this relative residual.")
    hessian_samples: int = Field(64, ge=1, description="cg: conflict records the Hessian is averaged over.")
    normalise: Literal["sum", "mean"] = Field("mean", description="sum: weights sum to 1 (reference). mean: average 1.")
    method: Literal["central", "jvp", "exact"] = Field(
        "central",
        description="central: batched central difference in fp32. jvp: batched forward-mode AD (eager attention). "
        "exact: per-sample autograd, one backward pass per record (the reference code's structure). "
        "With variant cosine, central and jvp both take per-sample gradients batched with torch.func.vmap "
        "(eager attention), which give the dot product and the norm exactly; that needs about 3x the memory "
        "of a batched backward pass (lower batch_size if short).",
    )
    epsilon: float = Field(1e-3, gt=0, description="central: step along the unit direction.")
    batch_size: int = Field(8, ge=1, description="Records per forward pass.")
    max_length: int = Field(256, ge=8, description="Tokens per (prompt, response); longer ones are truncated.")
    params: ParamSpaceConfig = Field(default_factory=ParamSpaceConfig, description="Parameters the scores are taken in (see Parameter space).")
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("float32", description="Model weights dtype.")
    skip_invalid: bool = Field(False, description="Report and skip bad records instead of stopping.")
