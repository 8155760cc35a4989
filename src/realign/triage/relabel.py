"""The oracle's compliant y_c for each PUNISH prompt (docs/method.md, optional oracle), which
DPO-Gold's relabelled set (:func:`realign.data.triaged.gold_pairs`) pairs with the old winner."""

from __future__ import annotations

import sys
from typing import Sequence

from tqdm.auto import tqdm

from ..data import PUNISH, PreferencePair, as_response, prompt_text
from ..judges.base import Judge, JudgeItem
from ..judges.cache import VerdictCache
from ..judges.store import VerdictStore
from ..policy import Policy
from .judging import TriageStats


def attach_oracle_responses(
    records: Sequence[PreferencePair],
    policy: Policy,
    oracle,
    judge: Judge,
    cache: VerdictCache,
    stats: TriageStats,
    progress: bool = True,
) -> dict[str, int]:
    """Ask the oracle for a compliant y_c for each PUNISH prompt, keep it only if the judge
    finds it compliant (docs/method.md, optional oracle). Generations are cached, so a rerun asks
    nothing twice."""
    punish = [r for r in records if r.category == PUNISH]
    prompts = sorted({prompt_text(r.prompt) for r in punish})
    texts: dict[str, str] = {}
    todo = []
    for x in prompts:
        hit = cache.get_generation(oracle.identity, policy.hash, x)
        if hit is None:
            todo.append(x)
        else:
            texts[x] = hit
    if todo:
        bar = tqdm(total=len(todo), desc="oracle", unit="resp", disable=not progress, file=sys.stderr)

        def keep(j: int, text: str) -> None:
            texts[todo[j]] = text
            cache.put_generation(oracle.identity, policy.hash, todo[j], text)
            bar.update(1)

        try:
            oracle.generate(todo, policy, on_result=keep)
        finally:
            cache.commit()
            bar.close()
    written = [x for x in prompts if texts.get(x, "").strip()]
    verdicts = VerdictStore(judge, policy, cache, progress).resolve(
        [JudgeItem(x, texts[x]) for x in written], stats
    )
    accepted = {x for x, v in zip(written, verdicts) if v.compliant}
    for r in punish:
        x = prompt_text(r.prompt)
        if x in accepted:
            r.oracle = as_response(texts[x], r.chosen)
    return {
        "punish_prompts": len(prompts),
        "generated": len(todo),
        "empty": len(prompts) - len(written),
        "judged_violating": len(written) - len(accepted),
        "accepted": len(accepted),
    }
