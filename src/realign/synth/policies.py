"""The synthetic world's policies: packaged YAML files in the ordinary policy format
(``realign/resources/synth/*.yaml``), loadable with :meth:`realign.policy.Policy.load`.

* ``synth-old`` -- the old policy π_old the bootstrap model is aligned to;
* ``synth-contextual`` -- shift (a), contextual exceptions;
* ``synth-stricter`` -- shift (b), a category that was answered must now be refused;
* ``synth-referral`` -- shift (c), helpful answers must point to a professional;
* ``synth-contextual-referral`` -- (a) and (c) together;
* ``synth-research-referral`` -- validation only (:data:`VALIDATION_SHIFTS`): a referral answer
  required in one context (research) for two categories, a shift the old data barely shows
  (most of its conflicts are PUNISH pairs).

A new shift is one more YAML file: copy ``synth_old.yaml`` and edit ``text`` and
``rules.requirements`` (keep the ``styles``, ``categories`` and ``contexts`` tables, which
the world's prompts and responses are written to match).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..errors import RealignError
from ..policy import Policy, resolve_policy
from ..resources import resource_path

OLD = "synth-old"
SHIFTS = ("synth-contextual", "synth-stricter", "synth-referral", "synth-contextual-referral")
#: Shifts only the efficacy benchmark's validation split runs (defaults are chosen on them; the
#: report split and ``synth export``'s default keep :data:`SHIFTS`).
VALIDATION_SHIFTS = ("synth-research-referral",)
POLICY_NAMES = (OLD, *SHIFTS, *VALIDATION_SHIFTS)


def policy_path(name: str) -> Path:
    """The packaged file of a synth policy (``synth-old`` -> ``resources/synth/synth_old.yaml``)."""
    if name not in POLICY_NAMES:
        raise RealignError(f"{name}: not a synthetic-world policy (known: {', '.join(POLICY_NAMES)})")
    return resource_path(f"synth/{name.replace('-', '_')}.yaml")


@lru_cache(maxsize=32)
def _load(path: str) -> Policy:
    return Policy.load(path)


def load_policy(name_or_path: str | Path) -> Policy:
    """A synth policy by name, or any policy file (a user's own shift) by path."""
    key = str(name_or_path)
    path = policy_path(key) if key in POLICY_NAMES else resolve_policy(key)
    return _load(str(path))


def load_policies(names: tuple[str, ...] | list[str] = POLICY_NAMES) -> dict[str, Policy]:
    """``{policy name: Policy}`` for ``names`` (names or paths), in order."""
    policies = [load_policy(n) for n in names]
    return {p.name: p for p in policies}
