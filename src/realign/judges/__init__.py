"""Judges of policy compliance and the clients they own.

* :mod:`.base` — the protocol of a pointwise judge, its items and verdicts;
* :mod:`.registry` — the backends by name, each role's class: pointwise (:mod:`.rules`,
  :mod:`.hf`, :mod:`.openai_compat`), pairwise (:mod:`.pairwise`) and the oracle (:mod:`.oracle`);
* :mod:`.chat_client`, :mod:`.endpoints`, :mod:`.async_calls` — the HTTP client of
  OpenAI-compatible endpoints, which the judges, the oracle and ``realign eval``'s server
  generator share;
* :mod:`.store` — verdicts of unique items, cache first, then the judge; abstentions settled
  or retried (triage, eval, the sampling methods and the judge audit judge through it);
* :mod:`.cache` — the verdict (and generation) cache every stage reads first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Judge, JudgeItem, Verdict
from .cache import VerdictCache
from .registry import build

if TYPE_CHECKING:  # pragma: no cover - the config reads the backends' names from .registry
    from ..config import JudgeConfig

__all__ = ["Judge", "JudgeItem", "Verdict", "VerdictCache", "endpoint_named", "make_judge"]


def make_judge(config: JudgeConfig) -> Judge:
    """Build the configured backend (:mod:`.registry`; imports heavy dependencies only when needed)."""
    return build("pointwise", config)


def endpoint_named(judge: Judge) -> dict[str, str]:
    """``{"judge_endpoint": URL}`` for a judge that asks a hosted endpoint (its ``endpoint``: no
    credentials, no query), to be written beside its identity in a stage's output; else ``{}``."""
    endpoint = getattr(judge, "endpoint", None)
    return {"judge_endpoint": endpoint} if isinstance(endpoint, str) and endpoint else {}
