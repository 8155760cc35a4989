"""Judge backends by name: the one table that says which backends exist and what each can do
(docs/extending.md, "A judge backend").

A backend is one module that defines a constructor per role it plays, each taking the role's
config — ``pointwise(config)``: π_new(y|x), a :class:`~realign.judges.base.Judge` for triage and
eval (docs/method.md, "Triage judge"); ``pairwise(config)``: which of two responses complies
better (``realign winrate``); ``oracle(config)``: writes y_c for PUNISH prompts (docs/method.md,
"Optional oracle") — and one entry here. The configs' ``backend`` fields and the CLI's
``--judge``/``--oracle`` names are read from this table. A backend's module is imported only
when one of its constructors is used, so no backend's dependencies load with the config.
"""

from __future__ import annotations

from importlib import import_module

from ..errors import RealignError

#: backend name -> (its module, the roles it defines a constructor for)
BACKENDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "rules": ("realign.judges.rules", ("pointwise", "pairwise")),
    "openai": ("realign.judges.openai_compat", ("pointwise", "pairwise", "oracle")),
    "hf": ("realign.judges.hf", ("pointwise", "pairwise", "oracle")),
}


def backend_names(role: str) -> tuple[str, ...]:
    """The backends that play ``role`` (``pointwise``, ``pairwise`` or ``oracle``), in table order."""
    return tuple(name for name, (_, roles) in BACKENDS.items() if role in roles)


def build(role: str, config):
    """The ``role`` of ``config.backend``, built from ``config``."""
    module, roles = BACKENDS.get(config.backend, ("", ()))
    if role not in roles:
        raise RealignError(f"{role} backend {config.backend!r}: expected {', '.join(backend_names(role))}")
    return getattr(import_module(module), role)(config)
