"""``realign judge audit``'s config."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from .base import StrictModel, default_cache_dir
from .endpoints import JudgeConfig


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
