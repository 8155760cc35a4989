"""Verdicts for unique (prompt, response) items, cache first, then the judge — what every stage
that judges reads them through (triage, its corrective and oracle responses, evaluation, the
sampling methods' samples, the judge audit) — with the ``on_unparseable`` rule that settles an
abstention and the retries of abstentions."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Sequence

from tqdm.auto import tqdm

from ..config import UnparseableRule
from ..errors import JudgeError
from ..policy import Policy
from .base import Judge, JudgeItem, Verdict
from .cache import VerdictCache


@dataclass
class JudgingCounts:
    """What judging met: answers read from the cache, items judged, backend calls (retries
    included), abstentions, and the abstentions a retry resolved."""

    cache_hits: int = 0
    judged: int = 0
    judge_calls: int = 0
    abstentions: int = 0
    abstentions_resolved: int = 0


class VerdictStore:
    """Verdicts for unique (prompt, response) items: cache first, then the judge."""

    def __init__(self, judge: Judge, policy: Policy, cache: VerdictCache, progress: bool = True) -> None:
        self.judge, self.policy, self.cache, self.progress = judge, policy, cache, progress

    def resolve(self, items: Sequence[JudgeItem], stats: JudgingCounts, *, fresh: bool = False,
                names: Sequence[str] | None = None) -> list[Verdict]:
        """One verdict per item. ``names``: what each item is (a record and its response), put
        before the message of a judge error about one item (a rule regex that ran out of time)."""
        verdicts: list[Verdict | None] = [None] * len(items)
        if not fresh:
            for i, v in self.cache.get_many(self.judge.identity, self.policy.hash, items).items():
                verdicts[i] = v
        missing = [i for i, v in enumerate(verdicts) if v is None]
        stats.cache_hits += len(items) - len(missing)
        if missing:
            todo = [items[i] for i in missing]
            bar = tqdm(total=len(todo), desc="judging", unit="resp", disable=not self.progress, file=sys.stderr)
            calls_before = self.judge.calls

            def store(j: int, verdict: Verdict) -> None:
                verdicts[missing[j]] = verdict
                self.cache.put(self.judge.identity, self.policy.hash, todo[j], verdict)
                bar.update(1)

            try:
                self.judge.judge(todo, self.policy, on_verdict=store)
            except JudgeError as exc:
                if exc.item is None or names is None:
                    raise
                raise JudgeError(f"{names[missing[exc.item]]}: {exc}") from None
            finally:
                self.cache.commit()
                bar.close()
                stats.judge_calls += self.judge.calls - calls_before
            stats.judged += len(todo)
        assert all(v is not None for v in verdicts), "judge returned fewer verdicts than items"
        return verdicts  # type: ignore[return-value]


def settle(verdict: Verdict, rule: UnparseableRule) -> bool | None:
    """Apply the ``on_unparseable`` rule to an abstention; None means drop the pair."""
    if verdict.compliant is not None:
        return verdict.compliant
    return {"violating": False, "compliant": True}.get(rule)


def retry_abstentions(store: VerdictStore, items: Sequence[JudgeItem], verdicts: list[Verdict],
                      stats: JudgingCounts, retries: int) -> None:
    """Judge the abstained items again (no cache), up to ``retries`` times, in place."""
    abstained = [i for i, v in enumerate(verdicts) if v.abstained]
    for _ in range(retries):
        abstained = [i for i in abstained if verdicts[i].abstained]
        if not abstained:
            break
        again = store.resolve([items[i] for i in abstained], stats, fresh=True)
        for i, v in zip(abstained, again):
            verdicts[i] = v
    stats.abstentions_resolved = stats.abstentions - sum(verdicts[i].abstained for i in abstained)
