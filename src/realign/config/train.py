"""Stage 3's config (``realign train``): the method and its terms' weights, LoRA, the sampling
of the methods that sample, and the Trainer's settings (``trainer_args`` checked when the config
is validated, :mod:`realign.train.trainer_args`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from ..train.trainer_args import eval_set_problem, trainer_args_problem
from .base import StrictModel, default_cache_dir
from .endpoints import JudgeConfig


class LoraConfigModel(StrictModel):
    """PEFT LoRA settings (defaults: the authors' reference code)."""

    r: int = Field(32, ge=1, description="Rank.")
    alpha: int = Field(16, ge=1, description="LoRA alpha.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="LoRA dropout.")
    targets: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], description="Target modules.")


class SamplingConfig(StrictModel):
    """The methods that sample the model and judge its samples (``self-distill`` before training,
    ``online-dpo`` at every step; docs/method.md, "Baselines a practitioner would use"). Other
    methods ignore it."""

    samples: int = Field(4, ge=1, le=64, description="self-distill: responses sampled per old prompt (online-dpo "
                         "always samples two).")
    temperature: float = Field(1.0, gt=0, le=2.0, description="Sampling temperature (> 0: greedy samples of one "
                               "prompt would all be the same).")
    max_new_tokens: int = Field(128, ge=1, description="Longest sampled response.")
    system_prompt: bool = Field(
        False, description="Chat models: sample with the new policy's text as the system message (guided sampling); "
        "the trained sequences never carry it, so the model learns the behaviour without it. Leave off for a model "
        "never trained with a system message (the synthetic world's).")
    judge_budget: int | None = Field(
        None, ge=1, description="Most responses judged (verdicts asked for, whether or not the cache held them, so "
        "the budget does not depend on the cache); null: no cap. For TRACE the triage's verdicts are its budget.")
    on_budget: Literal["stop", "reuse"] = Field(
        "reuse", description="online-dpo, once the budget cannot pay for another step: stop training (the model as it "
        "is then is saved), or train the remaining steps on pairs already judged (drawn at random, seeded).")
    objective: Literal["sft", "dpo"] = Field(
        "sft", description="self-distill: SFT on the samples the judge passed, or DPO of each passed over a failed "
        "sample of the same prompt.")
    batch_size: int = Field(16, ge=1, description="self-distill: prompts per generation batch.")


class TrainConfig(StrictModel):
    """Stage 3 (Alg. 1 lines 34-46): train with a registered method (see `realign methods`)."""

    model: str = Field(..., description="θ_ref: hub id or local path.")
    adapter: str | None = Field(None, description="Existing PEFT adapter that is part of θ_ref (merged first).")
    data: str = Field(..., description="Weighted (or triaged) records.")
    invert_order: Literal["original", "swapped"] | None = Field(
        None, description="How INVERT records from elsewhere store their pair when a record does not say "
        "(no `swapped` field): original (chosen = the old winner) or swapped (chosen = the compliant response).")
    out: Path = Field(..., description="Run directory: checkpoints, final adapter or model, logs, resolved config.")
    method: str = Field("trace", description="Registered method name.")
    preference_loss: Literal["dpo", "ipo"] = Field("dpo", description="ℓ_pref form for TRACE-family methods.")
    beta: float = Field(0.3, gt=0, description="β (reference default 0.3).")
    alpha_kl: float = Field(
        0.1, ge=0, description="α_KL, weight of the KL term on RETAIN (the reference code's 0.1; the synthetic "
        "world runs 0.3, not yet compared on a real model: docs/method.md, 'Which defaults come from where')."
    )
    normalise: Literal["sum", "mean"] = Field("mean", description="Convention of uniform weights (trace-no-impact).")
    retain_pref: float = Field(
        0.1, ge=0, description="λ_R: weight of a preference term on RETAIN pairs whose loser violates π_new (TRACE "
        "family): where the new exceptions stop. 0.1 chosen with corrective responses on the validation split (without "
        "it they opened neighbouring contexts); 0 = the paper's objective."
    )
    retain_keep: float = Field(
        0.0, ge=0, description="λ_K: weight of a one-sided preference term on RETAIN pairs whose loser violates "
        "π_new, zero while the pair's margin over the reference is ≥ 0: it resists losing the old preference without "
        "strengthening it (TRACE family; 0 = the paper's objective)."
    )
    punish_without_y_c: Literal["npo", "exclude"] = Field(
        "npo", description="TRACE family: a PUNISH pair without a compliant response y_c gets dual NPO (the paper), or is "
        "left out as DPO-Gold leaves it out (with corrective responses, NPO on the old loser pushes down the opening the "
        "y_c of other prompts share)."
    )
    nll_weight: float = Field(
        0.0, ge=0, description="Anchor: weight of an NLL term on the positive response of every preference term "
        "(0: the paper's objective; the synthetic world and the SmolLM2 example run 1)."
    )
    nll_retain: bool = Field(
        False, description="Apply the NLL anchor to the kept response of RETAIN records (the KL terms) too."
    )
    rdpo_epsilon: float = Field(
        0.1, ge=0, lt=0.5, description="rdpo: ε, the share of preference labels assumed flipped (robust DPO, "
        "Chowdhury et al. 2024; 0 is DPO); e.g. the judge's error rate from `realign judge audit`. Other methods "
        "ignore it."
    )
    policy: Path | None = Field(None, description="self-distill, online-dpo: the new policy the judge applies to "
                                "samples (other methods read the triage's verdicts instead).")
    judge: JudgeConfig | None = Field(None, description="self-distill, online-dpo: the judge of the samples (see Judge).")
    cache: Path | None = Field(None, description="self-distill, online-dpo: verdict and sample cache (SQLite); default "
                               "<cache dir>/verdicts.sqlite.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig,
                                     description="self-distill, online-dpo: sampling and judging (see Sampling).")
    finetune: Literal["lora", "full"] = Field("lora", description="LoRA adapter (reference = adapter disabled) or full.")
    lora: LoraConfigModel = Field(default_factory=LoraConfigModel, description="LoRA settings (see LoRA).")
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate (reference 1e-4).")
    lr_scheduler: str = Field("cosine", description="transformers scheduler name.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Fraction of steps of linear warm-up.")
    epochs: float = Field(1.0, gt=0, description="Epochs (ignored when max_steps > 0).")
    max_steps: int = Field(-1, description="Optimizer steps (at least 1); -1 = use epochs.")
    batch_size: int = Field(4, ge=1, description="Terms per device per micro-batch.")
    gradient_accumulation: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_length: int = Field(256, ge=8, description="Tokens per (prompt, response).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on capable GPUs, else fp32.")
    precompute_ref: bool = Field(True, description="Compute reference log-probs once before training.")
    gradient_checkpointing: bool = Field(
        False, description="Recompute each block's activations in the backward pass: less memory, ~1/3 more compute."
    )
    seed: int = Field(0, description="Seed of initialisation (LoRA) and data order.")
    logging_steps: int = Field(10, ge=1, description="Optimizer steps between logged losses (L_I, L_II, L_KL separately).")
    save_steps: int = Field(100, ge=1, description="Checkpoint every this many steps.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept.")
    report_to: list[str] = Field(default_factory=lambda: ["none"], description="none, tensorboard, wandb, ...")
    resume: bool = Field(True, description="Resume from the run directory's last checkpoint if there is one.")
    device: str = Field("auto", description="auto, cpu, cuda (under accelerate launch: set by accelerate).")
    trainer_args: dict[str, Any] = Field(
        default_factory=dict, description="Extra transformers.TrainingArguments fields (deepspeed, fsdp, ...)."
    )

    def cache_path(self) -> Path:
        return self.cache or default_cache_dir() / "verdicts.sqlite"

    @field_validator("max_steps")
    @classmethod
    def _steps_or_epochs(cls, value: int) -> int:
        """-1 or a positive count: transformers trains 1 step for 0 and reads any negative as
        "use epochs", so both would silently do other than what was written."""
        if value == -1 or value >= 1:
            return value
        raise ValueError(f"must be at least 1 (optimizer steps), or -1 to train for `epochs`; {value} would "
                         + ("train 1 step" if value == 0 else "train for `epochs` instead"))

    @field_validator("lr_scheduler")
    @classmethod
    def _scheduler_without_eval_set(cls, value: str) -> str:
        problem = eval_set_problem("lr_scheduler_type", value)
        if problem is not None:
            raise ValueError(f"{problem}; choose another scheduler")
        return value

    @field_validator("trainer_args")
    @classmethod
    def _known_trainer_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value:
            problem = trainer_args_problem(value)
            if problem is not None:
                raise ValueError(problem)
        return value
