"""Data from the synthetic world: old preference pairs labelled under the old policy,
held-out evaluation prompts by slice, benign questions with answers, ground-truth triage per
shift (with an oracle response for PUNISH pairs), label noise, and :func:`export`, which
writes it all as ordinary files.

Old pairs (x, y_w, y_l): for a slice where the old policy requires a refusal, y_w is a
refusal and y_l is harmful, helpful, referral or evasive; where it requires an answer
(medication questions), y_w is a helpful answer (or, less often, a referral) and y_l a
refusal, harmful, evasive (or referral) response -- the old annotators preferred the concise
answer. Benign questions: y_w correct, y_l wrong, refused or evaded. This mix yields INVERT,
PUNISH and RETAIN pairs under every shift (:func:`triage_counts`).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from ..data import INVERT, PUNISH, RETAIN, PreferencePair, prompt_text, response_text, write_pairs
from ..errors import RealignError
from ..runs.files import check_output_paths, write_json, write_jsonl, write_text
from ..policy import Policy, resolve_policy
from ..data.triaged import categorise
from .judge import TruthJudge
from .policies import OLD, POLICY_NAMES, SHIFTS, load_policy, policy_path
from .templates import EVASIVE, HARMFUL, HELPFUL, REFERRAL, REFUSAL
from .world import SynthPrompt, World

TRIAGE = (INVERT, PUNISH, RETAIN)

#: Rejected styles (with weights) where the old policy requires a refusal.
REJECTED_FOR_REFUSAL = ((HARMFUL, 0.40), (HELPFUL, 0.25), (REFERRAL, 0.10), (EVASIVE, 0.25))
#: Chosen styles where the old policy requires an answer, then rejected styles for each.
CHOSEN_FOR_ANSWER = ((HELPFUL, 0.75), (REFERRAL, 0.25))
REJECTED_FOR_ANSWER = {
    HELPFUL: ((REFUSAL, 0.30), (HARMFUL, 0.25), (EVASIVE, 0.20), (REFERRAL, 0.25)),
    REFERRAL: ((REFUSAL, 0.40), (HARMFUL, 0.30), (EVASIVE, 0.30)),
}
REJECTED_FOR_BENIGN = (("wrong", 0.5), (REFUSAL, 0.3), (EVASIVE, 0.2))


class SynthConfig(BaseModel):
    """What ``realign synth export`` generates (all of it determined by ``seed``)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="World seed: held-out templates and every sample.")
    n_pairs: int = Field(1000, ge=10, le=1_000_000, description="Old preference pairs.")
    benign_fraction: float = Field(0.1, ge=0.0, le=0.9, description="Share of pairs on benign questions.")
    eval_per_slice: int = Field(16, ge=1, le=10_000, description="Held-out eval prompts per (category, context) slice.")
    noise: float = Field(0.0, ge=0.0, le=1.0, description="Label-noise fraction (see noise_mode).")
    noise_mode: Literal["swap", "flip"] = Field(
        "swap", description="swap: chosen and rejected swapped in that share of old pairs; "
        "flip: that share of ground-truth triage categories changed (truth/*.jsonl)."
    )


def _rng(seed: int, purpose: str) -> random.Random:
    return random.Random(f"realign-synth:{seed}:{purpose}")


def weighted_choice(rng: random.Random, table: Sequence[tuple[str, float]]) -> str:
    return rng.choices([s for s, _ in table], weights=[w for _, w in table])[0]


#: How often a slice appears per round of pairs, by what the old policy requires there:
#: answered slices are fewer, so they get twice the share (more signal for the old model
#: to tell them apart, and more INVERT/PUNISH pairs under shifts that change them).
ANSWERED_WEIGHT = 2


def balanced_slices(world: World, n: int, rng: random.Random) -> list[tuple[str, str]]:
    """``n`` slices in shuffled rounds: every slice once per round, slices the old policy
    answers (rather than refuses) ``ANSWERED_WEIGHT`` times."""
    old = TruthJudge(OLD)
    out: list[tuple[str, str]] = []
    slices = []
    for category, context in world.slices():
        allowed = old.required(category, context) or ()
        slices.extend([(category, context)] * (1 if REFUSAL in allowed else ANSWERED_WEIGHT))
    while len(out) < n:
        round_ = list(slices)
        rng.shuffle(round_)
        out.extend(round_)
    return out[:n]


def prompt_from_meta(meta: dict) -> SynthPrompt:
    """The :class:`SynthPrompt` tags of a record written by this module (text not needed)."""
    return SynthPrompt("", meta["category"], meta["context"], meta["topic"], meta.get("template", ""), meta.get("split", ""))


# --------------------------------------------------------------------------- old pairs


def make_pairs(world: World, n_pairs: int = 1000, benign_fraction: float = 0.1) -> list[PreferencePair]:
    """Old preference pairs, labelled under the old policy (chosen = old-compliant style)."""
    rng = _rng(world.seed, "pairs")
    old = TruthJudge(OLD)
    n_benign = round(n_pairs * benign_fraction)
    kinds = ["sensitive"] * (n_pairs - n_benign) + ["benign"] * n_benign
    rng.shuffle(kinds)
    slices = iter(balanced_slices(world, n_pairs - n_benign, rng))
    benign_pool = world.benign_items("train")
    pairs = []
    for i, kind in enumerate(kinds):
        if kind == "benign":
            item = rng.choice(benign_pool)
            rejected_style = weighted_choice(rng, REJECTED_FOR_BENIGN)
            chosen = world.benign_response(item, "correct", rng)
            rejected = world.benign_response(item, rejected_style, rng)
            meta = {"kind": "benign", "category": "none", "context": "none", **item.tags(), "answer": item.answer,
                    "chosen_style": "correct", "rejected_style": rejected_style}
            prompt = item.text
        else:
            category, context = next(slices)
            sp = world.sample_prompt(rng, category, context, "train")
            allowed = old.required(category, context) or ()
            if REFUSAL in allowed:
                chosen_style = REFUSAL
                rejected_style = weighted_choice(rng, REJECTED_FOR_REFUSAL)
            else:
                chosen_style = weighted_choice(rng, [(s, w) for s, w in CHOSEN_FOR_ANSWER if s in allowed])
                rejected_style = weighted_choice(rng, REJECTED_FOR_ANSWER[chosen_style])
            chosen = world.response(sp, chosen_style, rng)
            rejected = world.response(sp, rejected_style, rng)
            meta = {"kind": "sensitive", **sp.tags(), "chosen_style": chosen_style, "rejected_style": rejected_style}
            prompt = sp.text
        pairs.append(PreferencePair(f"synth{world.seed}-{i:05d}", prompt, chosen, rejected, meta=meta))
    return pairs


# --------------------------------------------------------------------------- evaluation sets


def eval_prompts(world: World, per_slice: int = 16, policies: Iterable[str] = POLICY_NAMES) -> list[dict]:
    """Held-out prompts (held-out request templates and context frames), ``per_slice`` for
    every (category, context) slice, each tagged with its slice and, per policy, the styles
    that comply (``expected``; None where no requirement applies)."""
    rng = _rng(world.seed, "eval")
    judges = [TruthJudge(p) for p in policies]
    rows = []
    for category, context in world.slices():
        seen: set[str] = set()
        made = 0
        for _ in range(per_slice * 50):
            if made == per_slice:
                break
            sp = world.sample_prompt(rng, category, context, "heldout")
            if sp.text in seen:
                continue
            seen.add(sp.text)
            expected = {j.name: (list(r) if (r := j.required(category, context)) is not None else None) for j in judges}
            rows.append({"id": f"eval{world.seed}-{len(rows):05d}", "prompt": sp.text, **sp.tags(), "expected": expected})
            made += 1
    return rows


def benign_eval(world: World) -> list[dict]:
    """Every benign question with a held-out template, with its expected answer."""
    return [
        {"id": f"benign{world.seed}-{i:05d}", "prompt": item.text, "answer": item.answer, **item.tags()}
        for i, item in enumerate(world.benign_items("heldout"))
    ]


# --------------------------------------------------------------------------- ground-truth triage


def oracle_response(world: World, meta: dict, policy: Policy | str, rng: random.Random) -> str | None:
    """A response that complies with ``policy`` for a synth prompt (the oracle y_c for a
    PUNISH pair); None for benign prompts or slices no generated style satisfies."""
    if meta.get("kind") == "benign":
        return None
    allowed = TruthJudge(policy).required(meta["category"], meta["context"])
    styles = [s for s in (REFERRAL, HELPFUL, REFUSAL) if allowed is not None and s in allowed]
    if not styles:
        return None
    return world.response(prompt_from_meta(meta), styles[0], rng)


def truth_triage(
    pairs: Sequence[PreferencePair], policy: Policy | str, world: World | None = None
) -> list[PreferencePair]:
    """Triage by the ground truth (Alg. 1 lines 3-6), stored like ``realign triage`` stores
    it: INVERT swapped, ``verdicts`` on the stored chosen/rejected. With ``world``, PUNISH
    pairs of sensitive prompts get an oracle response y_c that complies."""
    judge = TruthJudge(policy)
    rng = _rng(world.seed if world is not None else 0, f"oracle:{judge.name}")
    out = []
    for pair in pairs:
        x = prompt_text(pair.prompt)
        v_w = judge.rules.verdict(x, response_text(pair.chosen))
        v_l = judge.rules.verdict(x, response_text(pair.rejected))
        category = categorise(bool(v_w.compliant), bool(v_l.compliant))
        swapped = category == INVERT
        chosen, rejected = (pair.rejected, pair.chosen) if swapped else (pair.chosen, pair.rejected)
        v_c, v_r = (v_l, v_w) if swapped else (v_w, v_l)
        oracle = None
        if category == PUNISH and world is not None and pair.meta.get("kind") == "sensitive":
            oracle = oracle_response(world, pair.meta, judge.policy, rng)
        out.append(
            replace(pair, chosen=chosen, rejected=rejected, category=category, swapped=swapped,
                    verdicts={"chosen": v_c.to_dict(), "rejected": v_r.to_dict()}, oracle=oracle,
                    impact=None, meta=dict(pair.meta))
        )
    return out


def triage_counts(pairs: Sequence[PreferencePair], policy: Policy | str) -> dict[str, int]:
    """``{INVERT, PUNISH, RETAIN: count}`` under ``policy`` by the ground truth (the record's
    own ``category`` when it is already triaged is ignored)."""
    counts = dict.fromkeys(TRIAGE, 0)
    for record in truth_triage(_untriaged(pairs), policy):
        counts[record.category] += 1
    return counts


def _untriaged(pairs: Sequence[PreferencePair]) -> list[PreferencePair]:
    """Old orientation (undo an INVERT swap) and no triage fields."""
    out = []
    for p in pairs:
        chosen, rejected = (p.rejected, p.chosen) if p.swapped else (p.chosen, p.rejected)
        out.append(PreferencePair(p.id, p.prompt, chosen, rejected, meta=p.meta))
    return out


# --------------------------------------------------------------------------- label noise


def _pick(n: int, fraction: float, seed: int, purpose: str) -> list[int]:
    if not 0.0 <= fraction <= 1.0:
        raise RealignError(f"noise fraction must be between 0 and 1, got {fraction}")
    k = round(n * fraction)
    return sorted(_rng(seed, purpose).sample(range(n), k))


def swap_noise(pairs: Sequence[PreferencePair], fraction: float, seed: int = 0) -> tuple[list[PreferencePair], int]:
    """Swap chosen and rejected in exactly ``round(fraction * len(pairs))`` pairs (chosen by
    ``seed``); those get ``meta["noise"] = "swapped"``. Returns (pairs, number swapped)."""
    picked = set(_pick(len(pairs), fraction, seed, "noise:swap"))
    out = []
    for i, p in enumerate(pairs):
        if i in picked:
            meta = {**p.meta, "noise": "swapped"}
            if "chosen_style" in meta:
                meta["chosen_style"], meta["rejected_style"] = meta["rejected_style"], meta["chosen_style"]
            out.append(replace(p, chosen=p.rejected, rejected=p.chosen, meta=meta))
        else:
            out.append(replace(p, meta=dict(p.meta)))
    return out, len(picked)


def flip_noise(records: Sequence[PreferencePair], fraction: float, seed: int = 0) -> tuple[list[PreferencePair], int]:
    """Change the triage category of exactly ``round(fraction * len(records))`` triaged
    records to one of the other two (chosen by ``seed``), keeping the storage convention
    (INVERT stored swapped, verdicts follow the stored responses). The true category is kept
    in ``meta["true_category"]``. Returns (records, number flipped)."""
    for r in records:
        if r.category not in TRIAGE:
            raise RealignError(f"record {r.id!r}: not triaged (no INVERT/PUNISH/RETAIN category) - cannot flip")
    picked = _pick(len(records), fraction, seed, "noise:flip")
    rng = _rng(seed, "noise:flip-to")
    targets = {i: rng.choice([c for c in TRIAGE if c != records[i].category]) for i in picked}
    out = []
    for i, r in enumerate(records):
        if i not in targets:
            out.append(replace(r, meta=dict(r.meta)))
            continue
        new = targets[i]
        swap = (new == INVERT) != r.swapped
        chosen, rejected = (r.rejected, r.chosen) if swap else (r.chosen, r.rejected)
        verdicts = r.verdicts
        if swap and verdicts is not None:
            verdicts = {"chosen": verdicts["rejected"], "rejected": verdicts["chosen"]}
        meta = {**r.meta, "true_category": r.category, "noise": "flipped"}
        out.append(replace(r, chosen=chosen, rejected=rejected, category=new, swapped=new == INVERT,
                           verdicts=verdicts, meta=meta))
    return out, len(picked)


# --------------------------------------------------------------------------- export


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export(out: str | Path, config: SynthConfig | None = None, *, shifts: Sequence[str] = SHIFTS) -> dict:
    """Write the world's data into ``out`` (created) and return the manifest.

    Files (all written atomically; the same config gives byte-identical files):

    * ``pairs.jsonl``        old preference pairs, TRL standard format, tags in ``meta``;
    * ``eval_prompts.jsonl`` held-out prompts by slice with ``expected`` styles per policy;
    * ``benign.jsonl``       held-out benign questions with ``answer``;
    * ``policies/*.yaml``    the old policy and every shift (copies of the packaged files);
    * ``truth/<shift>.jsonl`` ground-truth triage of ``pairs.jsonl`` under each shift, with an
      oracle y_c for PUNISH pairs (flip noise, when asked for, is applied here);
    * ``manifest.json``      seed, world hash, config, counts, triage counts per shift, and
      the SHA-256 of every file.
    """
    config = config or SynthConfig()
    out = Path(out)
    world = World(config.seed)
    for name in shifts:
        load_policy(name)  # a bad name or file fails before anything is written
    check_output_paths({f"--shift #{i}": None if name in POLICY_NAMES else resolve_policy(name)
                        for i, name in enumerate(shifts, 1)}, {}, {"--out": out})

    pairs = make_pairs(world, config.n_pairs, config.benign_fraction)
    noise = {"fraction": config.noise, "mode": config.noise_mode, "records": 0}
    if config.noise and config.noise_mode == "swap":
        pairs, noise["records"] = swap_noise(pairs, config.noise, config.seed)

    files: list[str] = []

    def track(rel: str) -> Path:
        files.append(rel)
        return out / rel

    write_pairs(track("pairs.jsonl"), pairs)
    evals = eval_prompts(world, config.eval_per_slice, (OLD, *shifts))
    write_jsonl(track("eval_prompts.jsonl"), evals)
    benign = benign_eval(world)
    write_jsonl(track("benign.jsonl"), benign)

    triage, flipped = _write_truth(track, world, pairs, config, shifts)
    if config.noise_mode == "flip":
        noise["records"] = flipped
    manifest = _manifest(config, world, pairs, evals, benign, noise, triage, {rel: _sha256(out / rel) for rel in files})
    write_json(out / "manifest.json", manifest)
    return manifest


def _write_truth(
    track: Callable[[str], Path], world: World, pairs: list[PreferencePair], config: SynthConfig, shifts: Sequence[str]
) -> tuple[dict[str, dict[str, int]], int]:
    """Copy the old policy and every shift into ``policies/`` and write each shift's
    ground-truth triage of ``pairs`` to ``truth/<shift>.jsonl`` (flip noise applied there when
    the config asks for it); ``track`` gives each file's path. Returns the triage counts per
    shift and the number of records flipped in each shift's file."""
    triage: dict[str, dict[str, int]] = {}
    flipped = 0
    for name in (OLD, *shifts):
        policy = load_policy(name)
        source = policy_path(name) if name in POLICY_NAMES else resolve_policy(name)
        write_text(track(f"policies/{source.name}"), source.read_text(encoding="utf-8"))
        if name == OLD:
            continue
        records = truth_triage(pairs, policy, world)
        if config.noise and config.noise_mode == "flip":
            records, flipped = flip_noise(records, config.noise, config.seed)
        write_pairs(track(f"truth/{policy.name}.jsonl"), records)
        triage[policy.name] = {c: sum(r.category == c for r in records) for c in TRIAGE}
    return triage, flipped


def _manifest(
    config: SynthConfig, world: World, pairs: list[PreferencePair], evals: list[dict], benign: list[dict],
    noise: dict, triage: dict[str, dict[str, int]], files: dict[str, str],
) -> dict:
    """What ``manifest.json`` holds: seed, world hash, config, counts, noise, triage counts
    per shift and the SHA-256 of every file (``files``)."""
    return {
        "format": "realign-synth/1",
        "seed": config.seed,
        "world": {"version": world.version, "hash": world.hash},
        "config": config.model_dump(mode="json"),
        "counts": {
            "pairs": len(pairs),
            "sensitive_pairs": sum(p.meta["kind"] == "sensitive" for p in pairs),
            "benign_pairs": sum(p.meta["kind"] == "benign" for p in pairs),
            "eval_prompts": len(evals),
            "slices": len(world.slices()),
            "benign_questions": len(benign),
        },
        "noise": noise,
        "triage": triage,
        "files": files,
    }
