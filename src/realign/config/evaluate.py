"""The evaluation's config (``realign eval``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from .base import StrictModel, default_cache_dir
from .endpoints import GeneratorConfig, JudgeConfig


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
