"""Win rate of model A over model B: for every prompt both answered, a judge decides which
response complies better with the policy (docs/method.md, "Evaluation": the paper
reports human win rates of TRACE against U2A; here the judge is a model or the rules).

**Both orders.** Judges, LLMs above all, prefer a position. Every pair is therefore asked
twice, once with A's response shown first (order AB) and once with B's shown first (order
BA). Per order, A's share of the win is 1 (A preferred), 0 (B preferred) or 0.5 (a tie, which
only the rules judge gives); the item's score is the mean of the two orders, so a judge that
always names the first response scores every item 0.5 and the win rate is exactly 0.5.

**The judge** is a pairwise judge (:mod:`realign.judges.pairwise`: the question, its
backends ``openai``, ``hf`` and ``rules``). Identical responses are a tie without asking anyone.

**Statistics.** Per item the score s ∈ {0, ½, 1} (¼ and ¾ only when one order ties). Reported:
wins (s > ½), ties (s = ½), losses (s < ½), the win rate = mean score with a 95 % interval
from the normal approximation on the per-item scores (mean ± 1.96·sd/√n, clipped to [0, 1]).
A Wilson interval on "wins counting ties as half" would be wrong: the scores are not Bernoulli
trials. The share of A among the decisive items (ties left out) is a Bernoulli rate and gets a
Wilson interval. Items with an unparseable answer in either order are "undecided" and left out.
Position bias is reported too: the share of non-tie judgements won by the response shown first.

**Resume.** Per-item judgements go to ``<out stem>.items.jsonl`` beside the result (rewritten
atomically every few judgements and on exit); a rerun judges only what is missing. A row is
reused only if its key — judge identity, policy hash, prompt and both responses — matches.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..config import JudgeConfig
from ..data import iter_source, prompt_text, response_text
from ..errors import DataError, RealignError
from ..runs.files import check_output_paths, write_json, write_jsonl
from ..judges.cache import cache_key
from ..judges.pairwise import PairItem, PairVerdict, PairwiseJudge, make_pairwise_judge
from ..metrics.stats import Z95, wilson
from ..policy import Policy
from ..runs.provenance import provenance

__all__ = ["Generation", "items_path", "match_generations", "read_generations", "run_winrate", "summarise"]

FLUSH_EVERY = 32
FLUSH_SECONDS = 5.0


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Generation:
    id: str
    prompt: str
    response: str


def read_generations(path: str | Path) -> list[Generation]:
    """Rows with "id", "prompt" and "response" (strings or chat messages) from a JSONL file
    (``generations.jsonl`` of ``realign eval``; other fields are ignored). Bad rows raise a
    :class:`DataError` naming file, line and field; duplicate ids are errors too."""
    path = Path(path)
    if not path.exists():
        raise RealignError(f"{path}: file not found")
    rows: list[Generation] = []
    seen: set[str] = set()
    for where, obj in iter_source(path):
        if isinstance(obj, DataError):
            raise obj
        if not isinstance(obj, dict):
            raise DataError(path, "expected a JSON object", **where)
        for name in ("id", "prompt", "response"):
            if name not in obj or obj[name] is None:
                raise DataError(path, "missing field", field=name, **where)
        rid = obj["id"]
        if isinstance(rid, bool) or not isinstance(rid, (str, int)):
            raise DataError(path, f"expected a string or integer id, got {type(rid).__name__}", field="id", **where)
        rid = str(rid)
        if rid in seen:
            raise DataError(path, f"duplicate id {rid!r}", field="id", **where)
        seen.add(rid)
        texts = []
        for name, render in (("prompt", prompt_text), ("response", response_text)):
            value = obj[name]
            ok = isinstance(value, str) or (
                isinstance(value, list) and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in value)
            )
            if not ok:
                raise DataError(path, "expected a string or a list of chat messages", field=name, **where)
            texts.append(render(value))
        rows.append(Generation(rid, texts[0], texts[1]))
    return rows


def _examples(ids: Sequence[str], k: int = 3) -> str:
    shown = ", ".join(repr(i) for i in list(ids)[:k])
    return shown + (", ..." if len(ids) > k else "")


def match_generations(
    a: Sequence[Generation], b: Sequence[Generation], a_name: str = "A", b_name: str = "B"
) -> list[tuple[Generation, Generation]]:
    """Pairs (A row, B row) by id, in A's order; the two files must hold the same ids and the
    same prompt under each id."""
    by_id = {g.id: g for g in b}
    a_ids = [g.id for g in a]
    only_a = [i for i in a_ids if i not in by_id]
    a_set = set(a_ids)
    only_b = [g.id for g in b if g.id not in a_set]
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} only in {a_name} ({_examples(only_a)})")
        if only_b:
            parts.append(f"{len(only_b)} only in {b_name} ({_examples(only_b)})")
        raise RealignError(f"{a_name} and {b_name} must hold the same ids: " + "; ".join(parts))
    pairs = []
    for g in a:
        other = by_id[g.id]
        if g.prompt != other.prompt:
            raise RealignError(f"id {g.id!r}: the prompt in {a_name} differs from the prompt in {b_name}")
        pairs.append((g, other))
    return pairs


# --------------------------------------------------------------------------- statistics


SHARE = {"first": 1.0, "second": 0.0, "tie": 0.5}


def summarise(rows: Sequence[dict]) -> dict:
    """Win/tie/loss counts, the mean score with a normal-approximation 95 % interval, the
    decisive-only win share with a Wilson interval, and position-bias diagnostics, from
    per-item rows with "score", "ab" and "ba" (see the module docstring)."""
    scores = [r["score"] for r in rows if r.get("score") is not None]
    n = len(scores)
    wins = sum(s > 0.5 for s in scores)
    ties = sum(s == 0.5 for s in scores)
    losses = sum(s < 0.5 for s in scores)
    out: dict[str, Any] = {"n": n, "wins": wins, "ties": ties, "losses": losses, "undecided": len(rows) - n}
    if n:
        mean = sum(scores) / n
        sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1)) if n > 1 else float("nan")
        half = Z95 * sd / math.sqrt(n) if n > 1 else float("nan")
        ci = [max(0.0, mean - half), min(1.0, mean + half)] if n > 1 else [0.0, 1.0]
        out.update(win_rate=mean, ci95=ci, sd=sd if n > 1 else None)
    else:
        out.update(win_rate=None, ci95=[0.0, 1.0], sd=None)
    decisive = wins + losses
    out["decisive"] = {"rate": wins / decisive if decisive else None, "k": wins, "n": decisive,
                       "ci95": list(wilson(wins, decisive))}
    judgements = [r[o] for r in rows for o in ("ab", "ba") if isinstance(r.get(o), dict)]
    shown_first = [j["winner"] == "first" for j in judgements if j.get("winner") in ("first", "second")]
    both = [r for r in rows if r.get("a_wins_ab") is not None and r.get("a_wins_ba") is not None]
    out["position"] = {
        "first_shown_wins": sum(shown_first) / len(shown_first) if shown_first else None,
        "judgements": len(shown_first),
        "order_agreement": sum(r["a_wins_ab"] == r["a_wins_ba"] for r in both) / len(both) if both else None,
    }
    soft = [r["soft_score"] for r in rows if r.get("soft_score") is not None]
    out["mean_p"] = sum(soft) / len(soft) if soft else None
    return out


# --------------------------------------------------------------------------- running it


def items_path(out: str | Path) -> Path:
    """``winrate.json`` -> ``winrate.items.jsonl`` beside it (the per-item judgements)."""
    out = Path(out)
    return out.with_name(out.stem + ".items.jsonl")


class _ItemLog:
    """Per-item judgements: loaded for resume, rewritten atomically as they arrive."""

    def __init__(self, path: Path, identity: str, policy_hash: str) -> None:
        self.path, self.identity, self.policy_hash = path, identity, policy_hash
        self.rows: dict[str, dict] = {}
        self._dirty = 0
        self._last = time.monotonic()
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn line cannot happen with atomic writes; skip anything odd
                if isinstance(row, dict) and isinstance(row.get("id"), str) and isinstance(row.get("key"), str):
                    self.rows[row["id"]] = row

    def key(self, a: Generation, b: Generation) -> str:
        return cache_key(self.identity, self.policy_hash, a.prompt, a.response, b.response)

    def start(self, a: Generation, b: Generation) -> dict:
        """The item's row: reused when its key matches, else a fresh one."""
        key = self.key(a, b)
        row = self.rows.get(a.id)
        if row is None or row.get("key") != key:
            row = {"id": a.id, "key": key, "ab": None, "ba": None}
            self.rows[a.id] = row
        return row

    def record(self, row: dict, order: str, verdict: PairVerdict) -> None:
        row[order] = verdict.to_dict()
        _finish(row)
        self._dirty += 1
        if self._dirty >= FLUSH_EVERY or time.monotonic() - self._last >= FLUSH_SECONDS:
            self.flush()

    def flush(self, order: Sequence[str] | None = None) -> None:
        ids = list(order) if order is not None else list(self.rows)
        write_jsonl(self.path, (self.rows[i] for i in ids if i in self.rows))
        self._dirty = 0
        self._last = time.monotonic()


def _a_share(judgement: dict | None, a_first: bool) -> float | None:
    if not isinstance(judgement, dict) or judgement.get("winner") not in SHARE:
        return None
    share = SHARE[judgement["winner"]]
    return share if a_first else 1.0 - share


def _finish(row: dict) -> None:
    """Derived fields: A's share in each order, the item score and the probability score."""
    ab, ba = _a_share(row.get("ab"), True), _a_share(row.get("ba"), False)
    row["a_wins_ab"], row["a_wins_ba"] = ab, ba
    row["score"] = None if ab is None or ba is None else (ab + ba) / 2
    p_ab = (row.get("ab") or {}).get("p_first")
    p_ba = (row.get("ba") or {}).get("p_first")
    row["soft_score"] = None if p_ab is None or p_ba is None else (p_ab + (1.0 - p_ba)) / 2


def run_winrate(
    a: str | Path,
    b: str | Path,
    policy: Policy | str | Path,
    judge: JudgeConfig | PairwiseJudge,
    out: str | Path,
    *,
    label_a: str | None = None,
    label_b: str | None = None,
    progress: bool = False,
) -> dict:
    """Judge every (A, B) pair of responses in both orders and write the win rate of A to
    ``out`` (JSON) and the per-item judgements to :func:`items_path` (JSONL). Returns the
    result written to ``out``. Already judged items (same key) are not asked again.
    ``policy``: a :class:`Policy` or its YAML file. Outputs that would overwrite an input
    are refused first."""
    start = time.perf_counter()
    a, b, out = Path(a), Path(b), Path(out)
    hf_judge = isinstance(judge, JudgeConfig) and judge.backend == "hf"
    check_output_paths(
        {"--a": a, "--b": b, "--policy": None if isinstance(policy, Policy) else policy,
         "the judge model": judge.model if hf_judge else None},
        {"--out": out, "the judgements beside --out": items_path(out)},
    )
    policy = policy if isinstance(policy, Policy) else Policy.load(policy)
    pairs = match_generations(read_generations(a), read_generations(b), str(a), str(b))
    judge_obj = make_pairwise_judge(judge) if isinstance(judge, JudgeConfig) else judge
    log = _ItemLog(items_path(out), judge_obj.identity, policy.hash)
    jobs, identical = _pending(pairs, log)
    calls_before = judge_obj.calls
    ids = [ga.id for ga, _ in pairs]
    _judge_pending(judge_obj, policy, jobs, log, ids, progress)
    rows = [log.rows[i] for i in ids]
    result = {
        "stage": "winrate",
        "a": {"path": str(a), "label": label_a or a.stem},
        "b": {"path": str(b), "label": label_b or b.stem},
        "policy": {"name": policy.name, "hash": policy.hash},
        "judge": judge_obj.identity,
        "summary": summarise(rows),
        "items": len(rows),
        "items_path": str(items_path(out)),
        "judged_now": len(jobs),
        "identical_responses": identical,
        "judge_calls": judge_obj.calls - calls_before,
        "statistics": "score per item = mean over orders AB and BA of A's share of the win (1 win, 0.5 tie, "
        "0 loss); win_rate = mean score, ci95 = normal approximation on the per-item scores; decisive = "
        "wins / (wins + losses) with a Wilson interval",
        "wall_s": round(time.perf_counter() - start, 3),
        "provenance": provenance(),
    }
    write_json(out, result)
    return result


_Job = tuple[dict, str, PairItem]
"""A judgement still to ask: the item's row, the order (``ab``/``ba``), the question."""


def _pending(pairs: Sequence[tuple[Generation, Generation]], log: _ItemLog) -> tuple[list[_Job], int]:
    """(the judgements still to ask, one per missing order; the number of orders settled as ties
    because both responses are identical — nobody is asked)."""
    jobs: list[_Job] = []
    identical = 0
    for ga, gb in pairs:
        row = log.start(ga, gb)
        if ga.response == gb.response:  # a tie by definition: nobody is asked
            for order in ("ab", "ba"):
                if row.get(order) is None:
                    row[order] = PairVerdict("tie", 0.5, "identical responses").to_dict()
                    identical += 1
            _finish(row)
            continue
        if row.get("ab") is None:
            jobs.append((row, "ab", PairItem(ga.prompt, ga.response, gb.response)))
        if row.get("ba") is None:
            jobs.append((row, "ba", PairItem(ga.prompt, gb.response, ga.response)))
        _finish(row)
    return jobs, identical


def _judge_pending(judge: PairwiseJudge, policy: Policy, jobs: list[_Job], log: _ItemLog, ids: list[str],
                   progress: bool) -> None:
    """Ask the judge every pending judgement, each recorded in ``log`` as it arrives; the log is
    written in ``ids``' order at the end, also when judging fails."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="judging pairs", unit="pair", disable=not progress or not jobs, file=sys.stderr)

    def on_verdict(k: int, verdict: PairVerdict) -> None:
        row, order, _ = jobs[k]
        log.record(row, order, verdict)
        bar.update(1)

    try:
        if jobs:
            judge.compare([job[2] for job in jobs], policy, on_verdict)
    finally:
        bar.close()
        log.flush(ids)
