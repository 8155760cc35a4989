"""Judge backends by name: the one table that says which backends exist, which roles each plays
and the class that plays each role (docs/extending.md, "A judge backend").

The roles: ``pointwise`` — π_new(y|x), a :class:`~realign.judges.base.Judge` for triage and eval
(docs/method.md, "Triage judge"); ``pairwise`` — which of two responses complies better
(:class:`~realign.judges.pairwise.PairwiseJudge`, ``realign winrate``); ``oracle`` — writes y_c
for PUNISH prompts (:class:`~realign.judges.oracle.Oracle`; docs/method.md, "Optional oracle").
A role's class is built from the role's config (a ``JudgeConfig``, an ``OracleConfig`` for the
oracle). The configs' ``backend`` fields and the CLI's ``--judge``/``--oracle`` names are read
from this table. A class's module is imported only when it is built, so no backend's
dependencies load with the config.
"""

from __future__ import annotations

from importlib import import_module

from ..errors import RealignError

#: backend name -> {role: the class that plays it, as "module.Class"}
BACKENDS: dict[str, dict[str, str]] = {
    "rules": {
        "pointwise": "realign.judges.rules.RulesJudge",
        "pairwise": "realign.judges.pairwise.RulesPairwiseJudge",
    },
    "openai": {
        "pointwise": "realign.judges.openai_compat.OpenAIJudge",
        "pairwise": "realign.judges.pairwise.OpenAIPairwiseJudge",
        "oracle": "realign.judges.oracle.OpenAIOracle",
    },
    "hf": {
        "pointwise": "realign.judges.hf.HFJudge",
        "pairwise": "realign.judges.pairwise.HFPairwiseJudge",
        "oracle": "realign.judges.oracle.HFOracle",
    },
}


def backend_names(role: str) -> tuple[str, ...]:
    """The backends that play ``role`` (``pointwise``, ``pairwise`` or ``oracle``), in table order."""
    return tuple(name for name, roles in BACKENDS.items() if role in roles)


def build(role: str, config):
    """The ``role`` of ``config.backend``, built from ``config``."""
    path = BACKENDS.get(config.backend, {}).get(role)
    if path is None:
        raise RealignError(f"{role} backend {config.backend!r}: expected {', '.join(backend_names(role))}")
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)(config)
