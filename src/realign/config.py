"""Typed, validated configuration. YAML in; the resolved config is written beside every
stage's outputs. Every field carries its help text (shown by ``realign ... --help`` and in
the resolved YAML's schema)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from .errors import RealignError
from .judges.registry import backend_names
from .reading import read_yaml
from .train.trainer_args import eval_set_problem, trainer_args_problem

UnparseableRule = Literal["retry", "violating", "compliant", "drop"]


def _registered(role: str) -> AfterValidator:
    """A backend name checked against the table of backends (:mod:`realign.judges.registry`)
    when a config is validated, not frozen when this module is imported: a backend registered
    at run time (docs/extending.md, "A judge backend") is accepted like the built-in ones."""

    def check(name: str) -> str:
        names = backend_names(role)
        if name not in names:
            raise ValueError(f"expected {', '.join(names)} (the {role} backends of realign.judges.registry)")
        return name

    return AfterValidator(check)


#: The judge and oracle backends: names in the one table of them (:mod:`realign.judges.registry`).
JudgeBackend = Annotated[str, _registered("pointwise")]
OracleBackend = Annotated[str, _registered("oracle")]


def default_cache_dir() -> Path:
    """``$REALIGN_CACHE``, else ``$XDG_CACHE_HOME/realign``, else ``~/.cache/realign``."""
    if os.environ.get("REALIGN_CACHE"):
        return Path(os.environ["REALIGN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "realign"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EndpointConfig(StrictModel):
    """Connection to an OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, ...)."""

    model: str | None = Field(None, description="Model name (openai) or hub id / local path (hf).")
    base_url: str | None = Field(None, description="Endpoint URL; default $OPENAI_BASE_URL, else OpenAI's.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key.")
    api_key_file: Path | None = Field(None, description="File holding the API key (instead of the environment).")
    concurrency: int = Field(16, ge=1, le=1024, description="Requests in flight at once.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout in seconds.")
    max_retries: int = Field(12, ge=0, le=100, description="Retries on 429, 5xx, timeouts and malformed bodies.")
    backoff_base_s: float = Field(0.5, gt=0, description="First retry delay; doubles each retry, with jitter.")
    backoff_max_s: float = Field(20.0, gt=0, description="Longest delay between retries.")
    device: str = Field("auto", description="hf backend: 'auto', 'cpu', 'cuda', 'cuda:1', ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="hf backend weights dtype.")
    batch_size: int = Field(16, ge=1, description="hf backend: items per forward pass.")
    trust_remote_code: bool = Field(False, description="hf backend: run code shipped with the model (opt in).")


class JudgeConfig(EndpointConfig):
    """Which judge decides π_new(y|x) and how its failures are handled."""

    backend: JudgeBackend = Field(
        "rules", description=f"Judge backend: {', '.join(backend_names('pointwise'))}, or one registered in "
        "realign.judges.registry (docs/extending.md, \"A judge backend\").")
    logprobs: bool = Field(True, description="openai: ask for log-probs to report P(compliant).")
    on_unparseable: UnparseableRule = Field(
        "retry", description="An answer that is neither Yes nor No: ask again, or count it as given, or drop the pair."
    )
    unparseable_retries: int = Field(2, ge=0, le=20, description="Extra asks for 'retry' before the pair is dropped.")


class GeneratorConfig(EndpointConfig):
    """Where evaluation responses come from: the evaluated model itself (``hf``: Hugging Face
    ``generate`` in this process, data-parallel under ``accelerate launch``) or an
    OpenAI-compatible server serving it (``openai``: e.g. vLLM serving the base model with the
    trained LoRA adapter), with the judge's batching, retries, key handling and cache."""

    backend: Literal["hf", "openai"] = Field("hf", description="Generator backend.")
    baseline_model: str | None = Field(
        None, description="openai: the served name of the model without the adapter (for baseline: true).")


class OracleConfig(EndpointConfig):
    """A model that writes a compliant response y_c for PUNISH prompts (optional oracle; README, "The method")."""

    backend: OracleBackend = Field(
        "openai", description=f"Generator backend: {', '.join(backend_names('oracle'))}, or one registered in "
        "realign.judges.registry.")
    max_new_tokens: int = Field(256, ge=1, description="Longest response written.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature (0 = greedy).")


CorrectiveSource = Literal["old-responses", "samples", "style-prefix", "system-prompt"]


class CorrectiveConfig(StrictModel):
    """Corrective responses (docs/method.md, "Corrective responses"): for each PUNISH pair, a
    response to the same prompt that the judge verifies compliant, found without an oracle, used
    as y_c in (x, y_c ≻ y_w). Sources are tried in order; a later one only for the pairs still
    without y_c. Every candidate generated is written for its own prompt."""

    sources: list[CorrectiveSource] = Field(
        default_factory=lambda: ["old-responses", "style-prefix", "samples"], min_length=1,
        description="In order: old-responses (another old response to the exact same prompt that the judge "
        "found compliant), samples (the model's own samples), style-prefix (the model's samples continued from "
        "the opening words of compliant responses elsewhere in the data: INVERT winners, then RETAIN chosen), "
        "system-prompt (the model's samples with the policy text as system prompt).")
    model: str | None = Field(None, description="The model that samples (default in `realign run`: its model).")
    samples: int = Field(8, ge=1, le=256, description="Samples per prompt (per style prefix) at `temperature`.")
    temperature: float = Field(1.0, gt=0.0, le=2.0, description="Sampling temperature.")
    max_new_tokens: int = Field(64, ge=1, description="Longest candidate written.")
    prefix_words: int = Field(3, ge=1, le=32, description="style-prefix: words of a compliant response's opening.")
    prefixes: int = Field(8, ge=1, le=64, description="style-prefix: distinct prefixes tried (INVERT winners' "
                          "first, then by frequency).")
    opening: str | None = Field(
        None, description="style-prefix: a regex matching the start of a response that is about its own prompt "
        "(e.g. a restatement of the request); it is cut from the compliant responses before their first words are "
        "taken, and the model writes its own (greedy) before the prefix. None: prefixes start the response.")
    min_logprob: float | None = Field(
        None, le=0.0, description="Take only candidates whose mean token log-prob under the model is at least this "
        "(a fluency floor: a judge that reads style may accept garbled text that contains the right phrase); "
        "None: any. Candidates below it are not judged.")
    judge_chunk: int | None = Field(
        8, ge=1, description="Candidates per prompt judged per round, likeliest first; a prompt's judging stops at the "
        "round that finds a compliant one (the same y_c as judging every candidate, for fewer judge calls). None: "
        "judge every candidate.")
    batch_size: int = Field(32, ge=1, description="Prompts per generation batch.")
    device: str = Field("auto", description="cpu, cuda, cuda:N or auto.")
    seed: int = Field(0, description="Sampling seed.")


class TriageConfig(StrictModel):
    """Stage 1 (Alg. 1 lines 3-6): judge both responses of every pair and triage it."""

    data: str = Field(..., description="Preference pairs: .jsonl, .json, a saved dataset or hub name.")
    split: str = Field("train", description="Dataset split (hub or saved datasets).")
    invert_order: Literal["original", "swapped"] | None = Field(
        None, description="How INVERT records from elsewhere store their pair when a record does not say "
        "(no `swapped` field): original (chosen = the old winner) or swapped (chosen = the compliant response).")
    policy: Path = Field(..., description="The new policy's YAML file.")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="The judge of π_new (see Judge).")
    out: Path = Field(..., description="Triaged records (JSONL).")
    cache: Path | None = Field(None, description="Verdict cache (SQLite); default <cache dir>/verdicts.sqlite.")
    skip_invalid: bool = Field(False, description="Report and skip bad records instead of stopping.")
    gold_out: Path | None = Field(None, description="Also write the DPO-Gold relabelled set here (TRL format).")
    naive_out: Path | None = Field(None, description="Also write the naive relabelled set here (TRL format).")
    oracle: OracleConfig | None = Field(None, description="Writes compliant responses for PUNISH pairs.")
    corrective: CorrectiveConfig | None = Field(
        None, description="Find a judge-verified compliant response y_c for PUNISH pairs without an oracle.")
    max_case_failure_rate: float = Field(
        0.1, ge=0.0, le=1.0, description="Before triaging, the policy's test cases run through the judge; stop when "
        "more than this share of them fail (0: every case must pass; 1: never stop).")
    review: int = Field(
        0, ge=0, description="Write this many verdicts most likely wrong to review_out for a person to label: where "
        "second_judge disagrees first, then the least confident (P(compliant) nearest 0.5). 0: no review file.")
    review_out: Path | None = Field(
        None, validate_default=True, description="The review file (.csv or .jsonl): id, pair_id, role, prompt, "
        "response, verdict, p_compliant, second_verdict, reason and a blank label column; once labelled, it is a "
        "labels file.")
    second_judge: JudgeConfig | None = Field(
        None, description="A second judge (see Judge) whose disagreements with the judge head the review.")
    labels: Path | None = Field(
        None, description="A person's verdicts (a labels file: .csv, .jsonl or .json with prompt, response, label "
        "compliant/violating; blank labels skipped) put over the judge's for the responses they name.")

    @field_validator("review_out")
    @classmethod
    def _review_file(cls, out: Path | None, info: ValidationInfo) -> Path | None:
        """A review count and its file come together; the file is a CSV or a JSONL."""
        review = info.data.get("review")
        if review and out is None:
            raise ValueError(f"missing: review: {review} writes the verdicts to review to this file (.csv or .jsonl)")
        if out is not None and not review:
            raise ValueError("needs review: how many verdicts to write for review")
        if out is not None and out.suffix.lower() not in (".csv", ".jsonl"):
            raise ValueError(f"must end in .csv or .jsonl, got {str(out)!r}")
        return out

    @field_validator("second_judge")
    @classmethod
    def _second_judge_orders_the_review(cls, judge: JudgeConfig | None, info: ValidationInfo) -> JudgeConfig | None:
        if judge is not None and not info.data.get("review"):
            raise ValueError("orders the review only: set review (and review_out) too")
        return judge

    def cache_path(self) -> Path:
        return self.cache or default_cache_dir() / "verdicts.sqlite"


class JudgeAuditConfig(StrictModel):
    """``realign judge audit``: a judge's verdicts against human labels (docs/evaluation.md, "Auditing a judge")."""

    labels: Path = Field(..., description="Responses with a person's verdict (JSONL: prompt, response, label; "
                         "optional id, category, pair_id and role).")
    policy: Path = Field(..., description="The policy the labels and the judge apply.")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="The judge audited (see Judge).")
    out: Path = Field(..., description="Output folder: audit.html, audit.md, audit.json, audit_items.jsonl, "
                      "audit_config.yaml.")
    cache: Path | None = Field(None, description="Verdict cache (SQLite); default <cache dir>/verdicts.sqlite.")
    bins: int = Field(10, ge=2, le=100, description="Equal-width bins of P(compliant) in the calibration.")

    def cache_path(self) -> Path:
        return self.cache or default_cache_dir() / "verdicts.sqlite"


#: config keys that name files the run writes: relative ones are taken from the config's folder
OUTPUT_KEYS = frozenset({"out", "cache", "gold_out", "naive_out", "review_out"})
#: config keys that name files or folders the run reads (some may also be a hub id, a
#: ``hf:`` dataset or a packaged policy name)
INPUT_KEYS = frozenset({"data", "gold_data", "model", "adapter", "reference", "policy", "old_policy", "prompts",
                        "attacks", "attack_templates", "text", "api_key_file", "labels"})
#: sections whose keys are relocated too (a run config's stage sections, judge and oracle)
PATH_SECTIONS = frozenset({"judge", "second_judge", "oracle", "triage", "score", "train", "eval"})


def _relocate(value: str, folder: Path, output: bool) -> str:
    if value.startswith("hf:"):
        return value
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    here = folder / path
    if output or here.exists():
        return str(here)
    return str(path)  # a hub id, a packaged policy name, or a path from the working directory


def config_paths(raw: dict[str, Any], folder: str | Path) -> dict[str, Any]:
    """``raw`` (a config read from a file in ``folder``) with its paths resolved: ``~`` expanded
    everywhere; a relative output path (``out``, ``cache``, ``gold_out``, ``naive_out``) taken
    from ``folder``; a relative input path (``data``, ``model``, ``policy``, ``prompts``, ...)
    taken from ``folder`` when it exists there, else left as written (a hub id, a packaged
    policy name, or a path from the working directory). Flags on the command line stay
    relative to the working directory."""
    folder = Path(folder)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and key in PATH_SECTIONS:
            out[key] = config_paths(value, folder)
        elif isinstance(value, str) and value and (key in OUTPUT_KEYS or key in INPUT_KEYS):
            out[key] = _relocate(value, folder, key in OUTPUT_KEYS)
        else:
            out[key] = value
    return out


def load_yaml(path: str | Path, *, relative: bool = True) -> dict[str, Any]:
    """A YAML config file (a mapping), read with :func:`read_yaml`; with ``relative`` its paths
    resolved against the file's folder (:func:`config_paths`)."""
    path = Path(path)
    raw, _ = read_yaml(path)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RealignError(f"{path}: expected a YAML mapping at the top level")
    return config_paths(raw, path.parent) if relative else raw


def resolved(config: BaseModel) -> dict[str, Any]:
    """The config as plain data, for writing beside outputs (no secrets are ever in a config)."""
    return config.model_dump(mode="json")


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


class EvalConfig(StrictModel):
    """Evaluation: generate on held-out prompts and measure agreement with the new policy."""

    model: str = Field(..., description="Model: hub id or local path.")
    adapter: str | None = Field(None, description="PEFT adapter to evaluate on top of the model.")
    reference: str | None = Field(None, description="Reference model for KL (default: the model without adapter).")
    label: str | None = Field(None, description="Name of this run in reports (default: the adapter or model).")
    policy: Path = Field(..., description="The policy to measure agreement with.")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="The judge of π_new (see Judge).")
    prompts: str = Field(..., description="Eval prompts (JSONL rows with prompt, optional slice/answer), or triaged records.")
    attacks: str | None = Field(None, description="Harmful requests (JSONL with prompt) to wrap in attack templates.")
    attack_templates: Path | None = Field(None, description="YAML of attack templates (default: packaged).")
    text: str | None = Field(None, description="Held-out texts (JSONL with text, or .txt lines) for perplexity.")
    out: Path = Field(..., description="metrics.json (or a folder: FOLDER/metrics.json); generations.jsonl and the "
                      "resolved config go beside it.")
    baseline: bool = Field(False, description="Also evaluate the model without the adapter (before/after).")
    generator: GeneratorConfig = Field(
        default_factory=GeneratorConfig, description="Where responses come from: local generate or a server (see Generator).")
    max_new_tokens: int = Field(128, ge=1, description="Longest generated response.")
    temperature: float = Field(0.0, ge=0.0, description="0 = greedy.")
    seed: int = Field(0, description="Sampling seed (temperature > 0).")
    batch_size: int = Field(16, ge=1, description="Prompts per generation batch.")
    max_length: int = Field(512, ge=8, description="Tokens per (prompt, response) for KL and perplexity.")
    device: str = Field("auto", description="cpu, cuda, cuda:N or auto.")
    cache: Path | None = Field(None, description="Verdict and generation cache (SQLite).")

    @field_validator("out")
    @classmethod
    def _metrics_file(cls, out: Path) -> Path:
        """A folder (existing, or a path without a suffix) means FOLDER/metrics.json."""
        return out / "metrics.json" if out.is_dir() or not out.suffix else out

    def cache_path(self) -> Path:
        return self.cache or default_cache_dir() / "verdicts.sqlite"
