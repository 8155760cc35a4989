"""Judges of policy compliance: the protocol, the backends and the shared verdict cache."""

from __future__ import annotations

from ..config import JudgeConfig
from .base import Judge, JudgeItem, Verdict
from .cache import VerdictCache

__all__ = ["Judge", "JudgeItem", "Verdict", "VerdictCache", "make_judge"]


def make_judge(config: JudgeConfig) -> Judge:
    """Build the configured backend (imports heavy dependencies only when needed)."""
    if config.backend == "rules":
        from .rules import RulesJudge

        return RulesJudge()
    if config.backend == "openai":
        from .openai_compat import OpenAIJudge

        return OpenAIJudge(config)
    if config.backend == "hf":
        from .hf import HFJudge

        return HFJudge(config)
    raise ValueError(f"unknown judge backend {config.backend!r}")
