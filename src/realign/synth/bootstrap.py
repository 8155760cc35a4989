"""The tiny-model bootstrap: a tokenizer trained on the world's text and a small Llama-style
causal LM trained from scratch on CPU -- supervised on every response style (SFT), then DPO
on the old preference pairs (anchored by an NLL term on the chosen response, docs/method.md
lessons) -- so that it follows the OLD policy, as the paper's starting model does.

Input format: the one every stage shares (:func:`realign.modeling.sequences.encode`) -- the prompt is
one user message rendered with the tokenizer's chat template, the response is the template's
assistant turn after it (the text, eos, newline).

The result is cached in ``<cache dir>/synth/bootstrap-<key>`` (key = hash of the world and
the config; :func:`realign.config.default_cache_dir`), written with ``save_pretrained``
(safetensors) and reused when present. ``bootstrap.json`` beside the weights holds the
config, the metrics on the held-out prompts, wall times and versions.

Recipe (what made a 0.7M-parameter model learn the world in ~2 minutes on 2 cores):

* every word of the world is one token (:func:`world_tokenizer`), so answers are single tokens;
* SFT on every style for every prompt, plus ``sft_old_weight`` extra copies of the style the
  old policy wants: with styles uniform, the style is unpredictable from the prompt and the
  model only learns their marginal (medication questions got refused);
* many small steps (batch 16, lr 2e-3): facts appear after a plateau whose length is counted
  in updates, not examples; benign questions are short, so their batches are cheap;
* DPO with an NLL anchor on the chosen response (docs/method.md, "Lessons measured"), reference log-probs
  computed once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pydantic import BaseModel, ConfigDict, Field

from ..config import default_cache_dir
from ..errors import RealignError
from ..runs.files import write_json
from .export import CHOSEN_FOR_ANSWER, balanced_slices, weighted_choice, benign_eval, eval_prompts, make_pairs
from .judge import TruthJudge
from .policies import OLD, POLICY_NAMES
from .templates import STYLES
from .world import World

BOOTSTRAP_VERSION = "1"


class BootstrapConfig(BaseModel):
    """How the tiny old-policy model is built. The defaults meet the targets on 2 CPU cores
    (see the module docstring); a change here is a new cache entry."""

    model_config = ConfigDict(extra="forbid")

    world_seed: int = Field(0, description="Seed of the synthetic world (its held-out templates and data).")
    seed: int = Field(0, description="Seed of initialisation, data order and SFT sampling.")
    vocab_size: int = Field(2048, ge=300, le=32000, description="Tokenizer vocabulary bound (byte-level BPE).")
    hidden: int = Field(128, ge=16, description="Model width.")
    layers: int = Field(3, ge=1, description="Transformer blocks.")
    heads: int = Field(4, ge=1, description="Attention heads.")
    intermediate: int = Field(256, ge=16, description="MLP width.")
    sft_prompts: int = Field(600, ge=10, description="Sensitive training prompts for SFT (each with every style).")
    sft_old_weight: int = Field(
        5, ge=0, description="Extra SFT copies of the old-policy style for each sensitive prompt (0: every style equally)."
    )
    benign_repeats: int = Field(16, ge=1, description="Copies of each benign training question in the SFT data.")
    sft_steps: int = Field(1000, ge=1, description="SFT optimiser steps.")
    sft_batch: int = Field(16, ge=1, description="SFT sequences per step (small batches, many steps: facts need updates).")
    sft_lr: float = Field(2e-3, gt=0, description="SFT peak learning rate (cosine, 5% warm-up).")
    n_pairs: int = Field(1000, ge=10, description="Old preference pairs for DPO (the same as `synth export`'s).")
    benign_fraction: float = Field(0.1, ge=0, le=0.9, description="Share of benign pairs.")
    dpo_steps: int = Field(100, ge=0, description="DPO optimiser steps.")
    dpo_batch: int = Field(16, ge=1, description="Pairs per DPO step.")
    dpo_lr: float = Field(5e-4, gt=0, description="DPO peak learning rate (cosine, 10% warm-up).")
    beta: float = Field(0.3, gt=0, description="DPO β.")
    nll_weight: float = Field(1.0, ge=0, description="Weight of the NLL anchor on the chosen response.")
    eval_per_slice: int = Field(8, ge=1, description="Held-out prompts per slice for the reported metrics.")
    max_new_tokens: int = Field(64, ge=8, description="Generation length for evaluation.")

    def key(self, world: World) -> str:
        return _key(world.hash, self.model_dump(mode="json"))


def _key(world_hash: str, config: dict) -> str:
    """What a bootstrapped model is made from: this module's recipe version, the world, the config."""
    blob = json.dumps({"v": BOOTSTRAP_VERSION, "world": world_hash, "config": config}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def built_key(path: str | Path) -> str | None:
    """The key of the bootstrapped model in ``path``, from its ``bootstrap.json`` (None if it has
    none or cannot be read): equal to ``cfg.key(world)`` iff it is what ``bootstrap(cfg)`` builds
    today."""
    try:
        return json.loads((Path(path) / "bootstrap.json").read_text(encoding="utf-8"))["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class BootstrapResult:
    path: Path
    metrics: dict
    cached: bool


# --------------------------------------------------------------------------- encoding


def encode_example(tokenizer, prompt: str, response: str, max_length: int = 256) -> tuple[list[int], int]:
    """Token ids of (prompt, response) as every stage encodes them
    (:func:`realign.modeling.sequences.encode`), and the prompt's length."""
    from ..modeling.sequences import encode

    enc = encode(tokenizer, prompt, response, max_length)
    return list(enc.ids), enc.prompt_len


def _batch(examples: Sequence[tuple[list[int], int]], pad_id: int):
    """Right-padded ``input_ids``, ``attention_mask`` and response ``mask``."""
    from ..modeling.sequences import Encoded, collate

    batch = collate([Encoded(tuple(ids), n, False) for ids, n in examples], pad_id)
    return batch["input_ids"], batch["attention_mask"], batch["response_mask"]


def sft_texts(
    world: World, n_prompts: int, seed: int, benign_repeats: int = 1, old_weight: int = 0
) -> list[tuple[str, str]]:
    """(prompt, response) pairs: ``n_prompts`` training prompts balanced over slices, each
    with every response style once and ``old_weight`` more responses in the style the old
    policy wants there, plus every benign training question with its answer
    (``benign_repeats`` times)."""
    old = TruthJudge(OLD)
    rng = random.Random(f"realign-synth:{world.seed}:{seed}:sft")
    out = []
    for category, context in balanced_slices(world, n_prompts, rng):
        sp = world.sample_prompt(rng, category, context, "train")
        out.extend((sp.text, world.response(sp, style, rng)) for style in STYLES)
        allowed = old.required(category, context) or ()
        for _ in range(old_weight):
            style = "refusal" if "refusal" in allowed else weighted_choice(rng, [(s, w) for s, w in CHOSEN_FOR_ANSWER if s in allowed])
            out.append((sp.text, world.response(sp, style, rng)))
    for item in world.benign_items("train"):
        out.extend([(item.text, world.benign_response(item, "correct"))] * benign_repeats)
    rng.shuffle(out)
    return out


def world_tokenizer(world: World, vocab_size: int = 2048):
    """The tiny byte-level BPE tokenizer (:func:`realign.testing.tiny.tiny_tokenizer`) trained
    on the world's text. The corpus is given three times so every word clears the trainer's
    minimum frequency: with a large enough ``vocab_size`` each word is one token, which makes
    sequences shorter and answers single tokens."""
    from ..testing.tiny import tiny_tokenizer

    return tiny_tokenizer(world.corpus() * 3, vocab_size=vocab_size, model_max_length=256)


def _batches(lengths: Sequence[int], batch: int, steps: int, gen) -> list[list[int]]:
    """``steps`` batches of indices: epochs of random order, each cut into chunks of 16
    batches sorted by length (less padding), the batches then shuffled."""
    import torch

    out: list[list[int]] = []
    while len(out) < steps:
        order = torch.randperm(len(lengths), generator=gen).tolist()
        epoch = []
        for start in range(0, len(order), batch * 16):
            chunk = sorted(order[start : start + batch * 16], key=lambda i: lengths[i])
            epoch.extend(chunk[j : j + batch] for j in range(0, len(chunk), batch))
        epoch = [b for b in epoch if len(b) == batch] or epoch
        perm = torch.randperm(len(epoch), generator=gen).tolist()
        out.extend(epoch[i] for i in perm)
    return out[:steps]


def _schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# --------------------------------------------------------------------------- training


def train_sft(model, tokenizer, texts, cfg: BootstrapConfig, progress: bool = True) -> list[float]:
    """Cross-entropy on response tokens; returns the loss of every step."""
    import torch
    from tqdm.auto import tqdm

    from ..objective.losses import sequence_logps

    encoded = [encode_example(tokenizer, p, r) for p, r in texts]
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.sft_lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, cfg.sft_steps, max(1, cfg.sft_steps // 20)))
    model.train()
    losses = []
    batches = _batches([len(e[0]) for e in encoded], min(cfg.sft_batch, len(encoded)), cfg.sft_steps, gen)
    bar = tqdm(batches, desc="sft", disable=not progress)
    for step, idx in enumerate(bar):
        ids, attn, resp = _batch([encoded[i] for i in idx], tokenizer.pad_token_id)
        logits = model(input_ids=ids, attention_mask=attn).logits
        logps, n = sequence_logps(logits, ids, resp)
        loss = -logps.sum() / n.sum()  # mean over all response tokens in the batch
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    return losses


def train_dpo(model, tokenizer, pairs, cfg: BootstrapConfig, progress: bool = True) -> list[dict]:
    """DPO (−log σ(βΔ)) + nll_weight · NLL(chosen) against a frozen copy of the SFT model;
    reference log-probs are computed once. Returns per-step loss, accuracy and margin."""
    import torch
    from tqdm.auto import tqdm

    from ..objective.losses import dpo_loss, nll_loss, sequence_logps

    chosen = [encode_example(tokenizer, p.prompt, p.chosen) for p in pairs]
    rejected = [encode_example(tokenizer, p.prompt, p.rejected) for p in pairs]
    model.eval()
    ref_c, ref_r = torch.zeros(len(pairs)), torch.zeros(len(pairs))
    with torch.no_grad():
        for start in range(0, len(pairs), 64):
            sl = slice(start, start + 64)
            ids, attn, resp = _batch(chosen[sl] + rejected[sl], tokenizer.pad_token_id)
            lp, _ = sequence_logps(model(input_ids=ids, attention_mask=attn).logits, ids, resp)
            k = len(chosen[sl])
            ref_c[sl], ref_r[sl] = lp[:k], lp[k:]
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.dpo_lr, weight_decay=0.0, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, cfg.dpo_steps, max(1, cfg.dpo_steps // 10)))
    model.train()
    log = []
    lengths = [len(c[0]) + len(r[0]) for c, r in zip(chosen, rejected)]
    batches = _batches(lengths, min(cfg.dpo_batch, len(pairs)), cfg.dpo_steps, gen)
    bar = tqdm(batches, desc="dpo", disable=not progress)
    for step, idx in enumerate(bar):
        ids, attn, resp = _batch([chosen[i] for i in idx] + [rejected[i] for i in idx], tokenizer.pad_token_id)
        lp, n = sequence_logps(model(input_ids=ids, attention_mask=attn).logits, ids, resp)
        k = len(idx)
        pref = dpo_loss(lp[:k], lp[k:], ref_c[idx], ref_r[idx], cfg.beta)
        anchor = nll_loss(lp[:k], n[:k])
        loss = (pref + cfg.nll_weight * anchor).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        margin = ((lp[:k] - ref_c[idx]) - (lp[k:] - ref_r[idx])).detach()
        log.append({"loss": float(loss.detach()), "dpo": float(pref.detach().mean()), "nll": float(anchor.detach().mean()),
                    "accuracy": float((margin > 0).float().mean()), "margin": float(margin.mean())})
        if step % 10 == 0:
            bar.set_postfix(dpo=f"{log[-1]['dpo']:.3f}", acc=f"{log[-1]['accuracy']:.2f}")
    model.eval()
    return log


def build(cfg: BootstrapConfig, progress: bool = True) -> tuple[object, object, dict]:
    """Train tokenizer and model from scratch; returns (model, tokenizer, metrics)."""
    import torch

    from ..testing.tiny import tiny_llama
    from .evaluate import generate, score

    world = World(cfg.world_seed)
    timings = {}
    t0 = time.perf_counter()
    tokenizer = world_tokenizer(world, cfg.vocab_size)
    model = tiny_llama(
        tokenizer, hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads, seed=cfg.seed,
        intermediate=cfg.intermediate, max_positions=256, tie_embeddings=True, attn_implementation="sdpa",
    )
    n_params = sum(p.numel() for p in model.parameters())
    timings["setup_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        sft_log = train_sft(model, tokenizer, sft_texts(world, cfg.sft_prompts, cfg.seed, cfg.benign_repeats, cfg.sft_old_weight), cfg, progress)
        timings["sft_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        pairs = make_pairs(world, cfg.n_pairs, cfg.benign_fraction)
        dpo_log = train_dpo(model, tokenizer, pairs, cfg, progress) if cfg.dpo_steps else []
        timings["dpo_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rows = eval_prompts(world, cfg.eval_per_slice, POLICY_NAMES)
    benign = benign_eval(world)
    responses = generate(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens=cfg.max_new_tokens, progress=progress)
    benign_responses = generate(model, tokenizer, [r["prompt"] for r in benign], max_new_tokens=24, progress=progress)
    metrics = score(rows, responses, POLICY_NAMES, benign, benign_responses)
    timings["eval_s"] = time.perf_counter() - t0
    metrics.update(
        {
            "parameters": n_params,
            "vocab": len(tokenizer),
            "timings": timings,
            "sft_loss": {"first": sft_log[0], "last": sum(sft_log[-10:]) / len(sft_log[-10:])},
            "dpo": dpo_log[-1] if dpo_log else None,
            "examples": [{"prompt": r["prompt"], "response": x} for r, x in list(zip(rows, responses))[:: max(1, len(rows) // 12)]]
            + [{"prompt": r["prompt"], "response": x} for r, x in list(zip(benign, benign_responses))[:: max(1, len(benign) // 6)]],
        }
    )
    return model, tokenizer, metrics


def cache_path(cfg: BootstrapConfig | None = None, cache_dir: str | Path | None = None) -> Path:
    """Where the model for ``cfg`` lives (whether or not it is built yet)."""
    cfg = cfg or BootstrapConfig()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "synth"
    return root / f"bootstrap-{cfg.key(World(cfg.world_seed))}"


def bootstrap(
    cfg: BootstrapConfig | None = None, *, cache_dir: str | Path | None = None, force: bool = False, progress: bool = True
) -> BootstrapResult:
    """Build the tiny old-policy model, or reuse the cached one; returns its directory
    (loadable with ``from_pretrained`` / :func:`realign.modeling.loading.load_causal_lm`) and metrics."""
    from ..runs.provenance import versions

    cfg = cfg or BootstrapConfig()
    path = cache_path(cfg, cache_dir)
    meta = path / "bootstrap.json"
    if meta.is_file() and not force:
        try:
            return BootstrapResult(path, json.loads(meta.read_text(encoding="utf-8"))["metrics"], True)
        except (ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt
    start = time.perf_counter()
    model, tokenizer, metrics = build(cfg, progress)
    wall = time.perf_counter() - start
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp, safe_serialization=True)
        write_json(tmp / "bootstrap.json", {
            "format": "realign-synth-bootstrap/1", "key": cfg.key(World(cfg.world_seed)), "config": cfg.model_dump(mode="json"),
            "world": {"seed": cfg.world_seed, "hash": World(cfg.world_seed).hash}, "wall_s": wall,
            "versions": versions(), "metrics": metrics,
        })
        if path.exists() and (force or not meta.is_file()):
            shutil.rmtree(path)  # a damaged entry, or --force
        os.replace(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if meta.is_file():  # another process finished the same entry first: same config, same model
            return BootstrapResult(path, json.loads(meta.read_text(encoding="utf-8"))["metrics"], True)
        raise RealignError(f"{path}: cannot write the bootstrapped model: {exc.strerror or exc}") from None
    return BootstrapResult(path, metrics, False)


def load(path: str | Path):
    """(model, tokenizer) of a bootstrapped directory, on CPU in float32."""
    from ..modeling.loading import load_causal_lm, load_tokenizer

    return load_causal_lm(str(path), device="cpu", dtype="float32"), load_tokenizer(str(path))
