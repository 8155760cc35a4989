"""The reference model's part of training: its log-probs of every term's responses, precomputed
once (:func:`precompute_reference`, kept in the run folder's ``reference_logps.pt``), and the one
reference pass a micro-batch takes for what was not precomputed and for the KL terms'
full-vocabulary distributions (:func:`reference_pass`). The reference is the model with its LoRA
adapter disabled, or under full fine-tuning a frozen copy (:func:`reference_copy`)."""

from __future__ import annotations

import copy
import inspect
import sys
from pathlib import Path

import torch

from ..runs.files import atomic_open
from ..objective.losses import KIND_INDEX, LOSS_KINDS, token_kl, token_logps
from ..modeling.sequences import collate
from .dataset import TermDataset

#: The kinds whose loss reads reference log-probs (precomputed once, or taken in the step).
NEEDS_REF_LOGPS = {name for name, kind in LOSS_KINDS.items() if kind.reference == "logps"}


def reference_pass(model, inputs: dict, reference_logits, logits, start: int, trim: dict,
                   ref: torch.Tensor) -> torch.Tensor:
    """The micro-batch's one reference pass, over the sequences of :func:`reference_rows` only:
    fills ``ref`` in place where log-probs were not precomputed, and returns each KL term's
    token KL (zero for the other terms). ``logits``: the policy's, from position ``start``."""
    kind, mask, second_row = inputs["kind"], inputs["attention_mask"], inputs["second_row"]
    full_ids, full_resp = inputs["input_ids"], inputs["response_mask"]
    has_second = second_row >= 0
    missing = _missing_reference(inputs)
    # the one definition compute_loss also uses to keep sharded processes in step
    ref_rows = torch.nonzero(reference_rows(inputs)).flatten().tolist()
    kl = torch.zeros(kind.shape[0], device=logits.device)
    if not ref_rows:
        return kl
    seq_rows = sorted(set(ref_rows) | {int(second_row[i]) for i in ref_rows if has_second[i]})
    sel = torch.tensor(seq_rows, device=full_ids.device)
    ref_logits = reference_logits(model, full_ids[sel], mask[sel], **(trim if _takes_keep(reference_logits) else {}))
    ref_start = full_ids.shape[1] - ref_logits.shape[1]
    if ref_start < start:  # a reference that kept more positions than the policy: align them
        ref_logits, ref_start = ref_logits[:, start - ref_start :], start
    position = {r: j for j, r in enumerate(seq_rows)}
    ref_lp = token_logps(ref_logits, full_ids[sel, ref_start:], full_resp[sel, ref_start:]).sum(-1)
    for i in ref_rows:
        if missing[i]:
            ref[i, 0] = ref_lp[position[i]]
            if has_second[i]:
                ref[i, 1] = ref_lp[position[int(second_row[i])]]
    kl_terms = [i for i in ref_rows if kind[i] == KIND_INDEX["kl"]]
    if kl_terms:
        pos = torch.tensor([position[i] for i in kl_terms], device=full_ids.device)
        kl_rows = torch.tensor(kl_terms, device=full_ids.device)
        policy = logits[kl_rows]
        if ref_start > start:  # a policy that kept more positions than the reference
            policy = policy[:, ref_start - start :]
        kl = kl.index_put((kl_rows,), token_kl(policy, ref_logits[pos], full_resp[kl_rows, ref_start:]))
    return kl


def _missing_reference(inputs: dict) -> torch.Tensor:
    """Terms whose loss needs reference log-probs that were not precomputed."""
    kind, ref, second_row = inputs["kind"], inputs["ref"], inputs["second_row"]
    needs_ref = torch.isin(kind, torch.tensor([KIND_INDEX[k] for k in NEEDS_REF_LOGPS], device=kind.device))
    return needs_ref & (ref[:, 0].isnan() | ((second_row >= 0) & ref[:, 1].isnan()))


def reference_rows(inputs: dict) -> torch.Tensor:
    """The terms of a micro-batch for which :func:`realign.train.loss.term_losses` takes a
    reference pass: KL terms (full-vocabulary reference logits) and terms without precomputed
    log-probs (the trainer's ``compute_loss`` reads it too, to keep sharded processes in step)."""
    return (inputs["kind"] == KIND_INDEX["kl"]) | _missing_reference(inputs)


def _takes_keep(fn) -> bool:
    """Whether a reference-logits callable takes ``logits_to_keep`` (older ones get full logits)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is p.VAR_KEYWORD or p.name == "logits_to_keep" for p in params)


def precompute_reference(dataset: TermDataset, model, reference, pad_id: int, batch_size: int, device, progress: bool = True) -> None:
    """log π_ref of every response a term needs, once, in batches (sorted by length)."""
    from tqdm.auto import tqdm

    kinds = list(LOSS_KINDS)
    need = [i for i, it in enumerate(dataset.items) if kinds[it.kind] in NEEDS_REF_LOGPS]
    need.sort(key=lambda i: len(dataset.items[i].first.ids))
    bar = tqdm(total=len(need), desc="reference log-probs", unit="term", file=sys.stderr, disable=not (need and progress))
    with torch.no_grad(), reference():
        for start in range(0, len(need), batch_size):
            chunk = need[start : start + batch_size]
            seqs, where = [], []
            for i in chunk:
                it = dataset.items[i]
                where.append((i, 0))
                seqs.append(it.first)
                if it.second is not None:
                    where.append((i, 1))
                    seqs.append(it.second)
            batch = collate(seqs, pad_id, device)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            values = token_logps(logits, batch["input_ids"], batch["response_mask"]).sum(-1).cpu()
            for (i, side), v in zip(where, values):
                dataset.ref[i, side] = v
            bar.update(len(chunk))
    bar.close()


def reference_logps(config, dataset: TermDataset, model, reference, pad_id: int, device, state,
                    resume_from: str | None, progress: bool) -> None:
    """With ``precompute_ref``: the reference log-probs of every term, read back when resuming,
    else computed once and kept in ``reference_logps.pt``."""
    if not config.precompute_ref:
        return
    ref_cache = Path(config.out) / "reference_logps.pt"
    if ref_cache.exists() and resume_from:
        dataset.ref = torch.load(ref_cache)
        return
    # every process needs every term's values (the sampler deals terms out later)
    model.eval()
    precompute_reference(dataset, model, reference, pad_id, config.batch_size * 2, device,
                         progress and state.is_main_process)
    if state.is_main_process:
        with atomic_open(ref_cache, "wb") as fh:
            torch.save(dataset.ref, fh)


def reference_copy(config, model, dataset: TermDataset | None):
    """A frozen copy of the model as the reference, for full fine-tuning when a step needs
    reference logits (KL terms, or log-probs not precomputed: always for ``dataset`` None, the
    terms online-dpo builds as it trains); None otherwise."""
    needs_kl = dataset is None or any(it.kind == KIND_INDEX["kl"] for it in dataset.items)
    if config.finetune == "full" and (needs_kl or not config.precompute_ref):
        return copy.deepcopy(model).eval().requires_grad_(False)
    return None
