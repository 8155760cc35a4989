"""Stage 1's config (``realign triage``) and its corrective responses."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from .base import StrictModel, default_cache_dir
from .endpoints import JudgeConfig, OracleConfig

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
