"""What a run changed against its "before" (the base model's numbers): which slices the change
of policy changed, each slice's change with its 95 % interval, the regressions and the cost —
what the report's summary, its figures and its examples show (:mod:`.summary`).

Which slices changed is read from the eval prompts (``expected``: the styles each policy
requires, docs/evaluation.md) once the old policy is known: ``realign report --old-policy``,
else the ``old_policy`` of the run's ``run_config.yaml`` (``realign run``). A slice **regressed**
when the 95 % interval of its change (after - before, Newcombe's hybrid score interval from the
two Wilson intervals: :func:`realign.metrics.stats.difference`) lies wholly below zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import RealignError
from ..metrics.prompts import changed_slices, load_rows, states_expectation
from ..metrics.stats import difference, pool
from ..policy import Policy, resolve_policy
from .collect import RunData, Source
from .rows import Row, before_of

RUN_CONFIG = "run_config.yaml"
"""Where ``realign run`` records its resolved config, ``old_policy`` included."""


@dataclass(frozen=True)
class OldPolicy:
    """The policy a run's model was aligned to, and where it was named."""

    name: str
    hash: str
    named_in: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.hash})"


def load_old_policy(spec: str | Path, named_in: str) -> OldPolicy:
    """The old policy ``spec`` names (a policy file or a packaged policy's name)."""
    policy = Policy.load(resolve_policy(spec))
    return OldPolicy(policy.name, policy.hash, named_in)


def old_policies(found: RunData, given: OldPolicy | None) -> dict[Path, OldPolicy | None]:
    """The old policy of each run folder with evaluations: ``given`` (``--old-policy``) for all,
    else each folder's ``run_config.yaml`` ``old_policy``; one that cannot be loaded is a note
    of ``found`` and None."""
    out: dict[Path, OldPolicy | None] = {}
    for run in dict.fromkeys(src.run for src in found.evals):
        out[run] = given if given is not None else _recorded(run, found.notes)
    return out


def _recorded(run: Path, notes: list[str]) -> OldPolicy | None:
    path = run / RUN_CONFIG
    if not path.is_file():
        return None
    try:
        spec = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("old_policy")
        return load_old_policy(spec, str(path)) if isinstance(spec, str) and spec else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError, RealignError) as exc:
        notes.append(f"{path}: old_policy not read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                     "which slices the policy changed is unknown for this run")
        return None


@dataclass(frozen=True)
class Changed:
    """The slices of one evaluation that the change of policy changed (None: unknown), and one
    line saying how that is known or why not."""

    slices: frozenset[str] | None
    how: str


class PromptRows:
    """Eval prompt files read once each (by the path their metrics record): rows, or the line
    saying why they could not be read."""

    def __init__(self) -> None:
        self._read: dict[str, list[dict] | str] = {}

    def __call__(self, prompts: str) -> list[dict] | str:
        if prompts not in self._read:
            self._read[prompts] = self._load(prompts)
        return self._read[prompts]

    @staticmethod
    def _load(prompts: str) -> list[dict] | str:
        if not Path(prompts).is_file():
            return f"its eval prompts, {prompts}, are not a file here"
        try:
            return load_rows(prompts)
        except RealignError as exc:
            return f"its eval prompts could not be read ({exc})"


def changed_of(src: Source, old: OldPolicy | None, rows: PromptRows) -> Changed:
    """Which slices of ``src``'s evaluation the change from ``old`` to its policy changed."""
    if old is None:
        return Changed(None, "no old policy was named (give it with realign report --old-policy, or as old_policy: "
                             "in the run config)")
    new = (src.data.get("policy") or {}).get("name") if isinstance(src.data.get("policy"), dict) else None
    prompts = (src.data.get("config") or {}).get("prompts") if isinstance(src.data.get("config"), dict) else None
    if not new or not isinstance(prompts, str):
        return Changed(None, "its metrics.json does not record its policy and eval prompts")
    loaded = rows(prompts)
    if isinstance(loaded, str):
        return Changed(None, loaded)
    missing = [name for name in (old.name, new) if not states_expectation(loaded, name)]
    if missing:
        return Changed(None, f"its eval prompts ({prompts}) state no expected behaviour under {' or '.join(missing)}")
    return Changed(frozenset(changed_slices(loaded, old.name, new)),
                   f"from the eval prompts' expected behaviour under {old.name} (old) and {new} (new)")


@dataclass(frozen=True)
class SliceChange:
    """One slice before and after (RATE objects; None where not measured), the change with its
    95 % interval, and whether the policy changed the slice (None: unknown)."""

    name: str
    before: Any
    after: Any
    diff: tuple[float, float, float] | None
    changed: bool | None

    @property
    def regression(self) -> bool:
        """The change's interval lies wholly below zero."""
        return self.diff is not None and self.diff[2] < 0


@dataclass
class RunChange:
    """A run against its before: the slices, which the policy changed, the cost numbers."""

    row: Row
    before: Row | None
    changed: Changed
    slices: list[SliceChange] = field(default_factory=list)

    def pooled(self, changed: bool) -> tuple[dict | None, dict | None]:
        """Before and after over the slices the policy changed (or left unchanged), pooled."""
        group = [s for s in self.slices if s.changed is changed]
        if not group:
            return None, None
        return pool(s.before for s in group), pool(s.after for s in group)

    @property
    def regressions(self) -> list[SliceChange]:
        return [s for s in self.ranked() if s.regression][::-1]

    def ranked(self) -> list[SliceChange]:
        """The slices by change, largest gain first (those without a change last)."""
        return sorted(self.slices, key=lambda s: (s.diff is None, -(s.diff[0] if s.diff else 0.0)))

    def largest_drop(self) -> SliceChange | None:
        """The slice that fell most without being a regression."""
        drops = [s for s in self.slices if s.diff is not None and s.diff[0] < 0 and not s.regression]
        return min(drops, key=lambda s: s.diff[0]) if drops else None


def _by_slice(numbers: dict) -> dict:
    by_slice = (numbers.get("tpa") or {}).get("by_slice") if isinstance(numbers.get("tpa"), dict) else None
    return by_slice if isinstance(by_slice, dict) else {}


def run_changes(rows: list[Row], old: dict[Path, OldPolicy | None], prompt_rows: PromptRows) -> list[RunChange]:
    """A :class:`RunChange` for every run (not before) row of ``rows``."""
    out = []
    for row in rows:
        if row.baseline or row.source is None:
            continue
        before = before_of(row, rows)
        change = RunChange(row, before, changed_of(row.source, old.get(row.source.run), prompt_rows))
        after_slices, before_slices = _by_slice(row.numbers), _by_slice(before.numbers) if before else {}
        for name in [*after_slices, *(s for s in before_slices if s not in after_slices)]:
            b, a = before_slices.get(name), after_slices.get(name)
            known = change.changed.slices
            change.slices.append(SliceChange(str(name), b, a, difference(b, a) if b is not None else None,
                                             None if known is None else name in known))
        out.append(change)
    return out
