"""Stage 3 — re-alignment training on the Hugging Face Trainer (Alg. 1 lines 34-46).

A method (:mod:`realign.train.methods`) turns records into terms; every micro-batch, whatever mix
of term kinds it holds, costs one policy forward pass over all its sequences (first and
second responses concatenated) and at most one reference forward pass: with LoRA the
reference is the same model with its adapter disabled (no second copy), and reference
log-probs are precomputed once by default, so the reference pass only runs for the KL term's
full-vocabulary distributions. Loss per micro-batch: (1/E)·Σ_e w_e·ℓ_e over its E terms,
which is L_TRACE = L_I + L_II + α_KL·L_KL up to the constant 1/N in expectation.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import shutil
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from transformers import Trainer, TrainingArguments

from ..errors import RealignError
from ..losses import KIND_INDEX, LOSS_KINDS, TermInputs, token_kl, token_logps
from ..sequences import Encoded, collate, encode
from ..stage import Paths, output_digests, pad_token_id, process_state
from .methods import MethodOptions, Term, get_method

#: The kinds whose loss reads reference log-probs (precomputed once, or taken in the step).
NEEDS_REF_LOGPS = {name for name, kind in LOSS_KINDS.items() if kind.reference == "logps"}
#: The kinds whose first (preferred) response the NLL anchor applies to, by index.
ANCHORED = [KIND_INDEX[name] for name, kind in LOSS_KINDS.items() if kind.anchored]


#: The file in each checkpoint that keeps the budget spent so far (and online-dpo's state).
BUDGET_STATE = "budget_state.json"


class TrainingDiverged(RealignError):
    """A NaN or infinite loss: the run stops; checkpoints already written stay intact."""


@dataclass(frozen=True)
class EncodedTerm:
    kind: int
    weight: float
    component: str
    first: Encoded
    second: Encoded | None


class TermDataset(torch.utils.data.Dataset):
    """Tokenised terms, with reference log-probs once computed."""

    def __init__(self, terms: Sequence[Term], tokenizer, max_length: int) -> None:
        self.items = [
            EncodedTerm(
                KIND_INDEX[t.kind],
                float(t.weight),
                t.component,
                encode(tokenizer, t.prompt, t.first, max_length),
                encode(tokenizer, t.prompt, t.second, max_length) if t.second is not None else None,
            )
            for t in terms
        ]
        self.truncated = sum(it.first.truncated + bool(it.second and it.second.truncated) for it in self.items)
        self.ref = torch.full((len(self.items), 2), float("nan"))
        self.components = sorted({t.component for t in terms})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return {"index": index}


class TermCollator:
    """Builds one batch of all sequences of a micro-batch's terms (dynamic padding), with
    the rows where each term's first and second response sit."""

    def __init__(self, dataset: TermDataset, pad_id: int, components: list[str]) -> None:
        self.dataset, self.pad_id, self.components = dataset, pad_id, components

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        index = [f["index"] for f in features]
        items = [self.dataset.items[i] for i in index]
        seqs: list[Encoded] = [it.first for it in items]
        second_row = []
        for it in items:
            if it.second is None:
                second_row.append(-1)
            else:
                second_row.append(len(seqs))
                seqs.append(it.second)
        batch = collate(seqs, self.pad_id)
        batch.update(
            kind=torch.tensor([it.kind for it in items]),
            weight=torch.tensor([it.weight for it in items], dtype=torch.float32),
            component=torch.tensor([self.components.index(it.component) for it in items]),
            second_row=torch.tensor(second_row),
            ref=self.dataset.ref[index],
        )
        return batch


class RealignTrainer(Trainer):
    """``Trainer`` whose loss is a weighted mix of term kinds (see module docstring)."""

    def __init__(self, *args, loss_options: dict, ref_model=None, budget=None, **kwargs) -> None:
        from .sampling import Budget

        super().__init__(*args, **kwargs)
        self.loss_options = loss_options
        self.ref_model = ref_model
        self.model_accepts_loss_kwargs = False  # our loss is already a per-batch mean
        self._logged: dict[str, float] = defaultdict(float)
        self._calls = 0
        #: what the run spent (train_summary.json's ``budget``), kept in every checkpoint
        self.budget = budget if budget is not None else Budget()
        self._clock = (time.perf_counter(), self.budget.train_s)

    def extra_state(self) -> dict:
        """What a subclass keeps in each checkpoint beside the budget (:meth:`load_extra_state`)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Take back what :meth:`extra_state` kept, when resuming."""

    def load_budget_state(self, checkpoint: str) -> None:
        """The budget and extra state of a checkpoint being resumed (one written before they were
        kept: nothing to take back). The budget is updated in place: a sampler adds to the same one."""
        from .sampling import Budget

        path = Path(checkpoint) / BUDGET_STATE
        if path.exists():
            state = json.loads(path.read_text(encoding="utf-8"))
            for name, value in Budget.from_dict(state["budget"]).to_dict().items():
                setattr(self.budget, name, value)
            self._clock = (time.perf_counter(), self.budget.train_s)
            self.load_extra_state(state)

    def tick(self) -> None:
        """Bring ``budget.train_s`` up to now."""
        started, before = self._clock
        self.budget.train_s = round(before + time.perf_counter() - started, 3)

    def _save_checkpoint(self, model, trial) -> None:
        """The Trainer's checkpoint with ``budget_state.json`` written first: the Trainer writes
        its ``trainer_state.json`` last, so a checkpoint complete for it holds the budget too."""
        from ..files import write_json

        if self.args.should_save:
            folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            self.tick()
            write_json(folder / BUDGET_STATE, {"budget": self.budget.to_dict(), **self.extra_state()})
        super()._save_checkpoint(model, trial)

    def reference_logits(self, model, input_ids, attention_mask, **kwargs) -> torch.Tensor:
        with torch.no_grad():
            if self.ref_model is not None:
                return self.ref_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits
            # DDP: the unwrapped model — the reference pass runs only on processes whose
            # micro-batch needs it, and a DDP wrapper's forward is a collective (it broadcasts
            # buffers), so going through it on one process only would leave the others waiting.
            # Sharded (FSDP, ZeRO-3): the wrapper, whose forward gathers the shards; every
            # process then takes the pass together (see compute_loss)
            unwrapped = self.accelerator.unwrap_model(model)
            forward = model if self._sharded() else unwrapped
            with unwrapped.disable_adapter():
                return forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits

    def _sharded(self) -> bool:
        """Whether every forward pass is a collective (FSDP, DeepSpeed ZeRO-3: it gathers shards)."""
        from transformers.integrations import is_deepspeed_zero3_enabled

        return self.is_fsdp_enabled or is_deepspeed_zero3_enabled()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        lockstep = self.ref_model is None and self.args.world_size > 1 and self._sharded()
        if lockstep:
            # a sharded model's forward is a collective: if any process needs the adapter-disabled
            # reference pass this micro-batch, the others take one too (one row, result unused)
            import torch.distributed as dist

            mine = bool(reference_rows(inputs).any())
            anyone = torch.tensor([float(mine)], device=self.args.device)
            dist.all_reduce(anyone, op=dist.ReduceOp.MAX)
        loss, parts = term_losses(model, inputs, self.loss_options, self.reference_logits)
        if lockstep and anyone[0] > 0 and not mine:
            self.reference_logits(model, inputs["input_ids"][:1], inputs["attention_mask"][:1])
        finite = torch.isfinite(loss.detach())
        if self.args.world_size > 1:
            # every process stops together: one that raised alone would leave the others
            # waiting for its gradients in the all-reduce of the backward pass
            import torch.distributed as dist

            flag = finite.to(torch.float32).reshape(1)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            finite = flag[0] > 0
        if not finite:
            detail = ", ".join(f"{k}={v:.4g}" for k, v in parts.items())
            largest = float(inputs["weight"].abs().max())
            raise TrainingDiverged(
                f"loss is {loss.item()} at step {self.state.global_step + 1} ({detail}; largest term weight in the "
                f"micro-batch {largest:.4g}); stopped. Checkpoints already written are intact; lower the learning rate "
                "or add nll_weight, or, if that weight is far above 1, check the records' `impact` field"
            )
        self._calls += 1
        self.budget.training_tokens += int(inputs["attention_mask"].sum())
        for k, v in parts.items():
            self._logged[k] += v
        return (loss, {}) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds each loss component, averaged over the micro-batches since the last log
        (a micro-batch without a component counts as 0 for it, so components sum to the loss)."""
        if self._calls:
            names = list(self.loss_options["components"])
            if self.loss_options["nll_weight"] > 0:
                names.append("L_NLL")
            names += [k for k in self._logged if k not in names]
            values = torch.tensor([self._logged.get(k, 0.0) / self._calls for k in names], dtype=torch.float64)
            if self.args.world_size > 1:
                # the mean over processes, as the Trainer does for the loss (every process runs
                # the same number of micro-batches, so all of them get here together)
                import torch.distributed as dist

                values = values.to(self.args.device)
                dist.all_reduce(values)
                values = values.cpu() / self.args.world_size
            logs.update(dict(zip(names, values.tolist())))
        self._logged.clear()
        self._calls = 0
        super().log(logs, start_time)


def term_losses(model, inputs: dict, options: dict, reference_logits) -> tuple[torch.Tensor, dict[str, float]]:
    """The micro-batch loss (1/E)·Σ w_e ℓ_e and its components, batched over all terms.

    ``options``: beta, preference_loss, nll_weight, nll_retain, components (names by index), and
    rdpo_epsilon (ε of ``rdpo`` terms; 0 where absent).
    The NLL anchor −log π_θ(y⁺|x)/|y⁺| (docs/method.md, "Lessons measured": anchor every DPO-family term) is
    added for the positive response of every preference term (the kinds marked ``anchored``) and,
    with ``nll_retain``, for the kept response of every KL (RETAIN) term."""
    ids, mask, resp = inputs["input_ids"], inputs["attention_mask"], inputs["response_mask"]
    kind, weight, second_row, ref = inputs["kind"], inputs["weight"], inputs["second_row"], inputs["ref"].clone()
    n_terms = kind.shape[0]
    beta = options["beta"]
    # logits only where a loss reads them (from the position before the earliest response token):
    # full-vocabulary logits over prompt positions are a large share of activation memory
    keep = logits_to_keep(resp) if options.get("trim_logits", True) and accepts_logits_to_keep(model) else 0
    trim = {"logits_to_keep": keep} if keep else {}
    logits = model(input_ids=ids, attention_mask=mask, **trim).logits
    start = ids.shape[1] - logits.shape[1]  # the positions dropped (0 if the model kept all)
    ids, resp = ids[:, start:], resp[:, start:]
    per_token = token_logps(logits, ids, resp)
    lp = per_token.sum(-1)
    lengths = resp[:, 1:].sum(-1).clamp(min=1).to(lp.dtype)

    rows2 = torch.where(second_row >= 0, second_row, torch.zeros_like(second_row))
    is_kl = kind == KIND_INDEX["kl"]
    kl = _reference_pass(model, inputs, reference_logits, logits, start, trim, ref)
    ref = torch.nan_to_num(ref.to(lp.dtype), nan=0.0)

    lp1, n1 = lp[:n_terms], lengths[:n_terms]
    lp2, n2 = lp[rows2], lengths[rows2]
    x = TermInputs(lp1 - ref[:, 0], lp2 - ref[:, 1], lp1, n1, n2, kl, options.get("rdpo_epsilon", 0.0))
    per_kind = {name: k.loss(x, beta, options["preference_loss"]) for name, k in LOSS_KINDS.items()}
    term_loss = torch.zeros_like(lp1)
    for name, value in per_kind.items():
        term_loss = torch.where(kind == KIND_INDEX[name], value, term_loss)
    weighted = weight.to(term_loss.dtype) * term_loss
    loss = weighted.sum() / n_terms
    parts: dict[str, float] = {}
    components = options["components"]
    comp = inputs["component"]
    for c, name in enumerate(components):
        sel = comp == c
        if sel.any():
            parts[name] = float(weighted[sel].sum().detach() / n_terms)
    if options["nll_weight"] > 0:
        anchored = torch.isin(kind, torch.tensor(ANCHORED, device=kind.device))
        if options.get("nll_retain"):
            anchored = anchored | is_kl
        nll = (-(lp1 / n1) * anchored).sum() / n_terms
        loss = loss + options["nll_weight"] * nll
        parts["L_NLL"] = float(nll.detach())
    return loss, parts


def _reference_pass(model, inputs: dict, reference_logits, logits, start: int, trim: dict,
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
    """The terms of a micro-batch for which :func:`term_losses` takes a reference pass: KL
    terms (full-vocabulary reference logits) and terms without precomputed log-probs."""
    return (inputs["kind"] == KIND_INDEX["kl"]) | _missing_reference(inputs)


def logits_to_keep(response_mask: torch.Tensor) -> int:
    """How many last positions' logits the losses of a right-padded batch read: from the one
    before the earliest response token (it predicts that token) to the end; 0 = all."""
    width = response_mask.shape[1]
    has = response_mask.bool().any(-1)
    if not bool(has.any()):
        return 0
    first = int(response_mask.bool().to(torch.uint8).argmax(-1)[has].min())
    keep = width - first + 1
    return keep if 0 < keep < width else 0


def accepts_logits_to_keep(model) -> bool:
    """Whether the causal LM under PEFT/DDP wrappers takes ``logits_to_keep`` (transformers
    >= 4.50 models do); checked once per model class."""
    inner = model
    for _ in range(4):
        if hasattr(inner, "module"):  # DDP / DeepSpeed engine
            inner = inner.module
        elif hasattr(inner, "get_base_model"):  # PEFT
            inner = inner.get_base_model()
        else:
            break
    return _forward_accepts(type(inner))


def _takes_keep(fn) -> bool:
    """Whether a reference-logits callable takes ``logits_to_keep`` (older ones get full logits)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is p.VAR_KEYWORD or p.name == "logits_to_keep" for p in params)


@functools.lru_cache(maxsize=None)
def _forward_accepts(cls) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(cls.forward).parameters
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- the stage on files


def _precision(config, device) -> dict[str, bool]:
    if config.precision == "auto":
        use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return {"bf16": use_bf16, "fp16": False}
    return {"bf16": config.precision == "bf16", "fp16": config.precision == "fp16"}


def _checkpointing(enabled: bool) -> dict:
    """TrainingArguments fields for activation (gradient) checkpointing, under the name this
    transformers version uses (``activation_checkpointing`` from v5.2x, ``gradient_checkpointing``
    before). Non-reentrant: gradients reach a LoRA adapter although the frozen embeddings' outputs
    do not require grad, and the adapter-disabled reference pass (no grad) runs unchanged."""
    if not enabled:
        return {}
    import dataclasses

    name = "activation_checkpointing" if any(
        f.name == "activation_checkpointing" for f in dataclasses.fields(TrainingArguments)) else "gradient_checkpointing"
    return {name: True, f"{name}_kwargs": {"use_reentrant": False}}


def produced_by(config) -> dict:
    """What produces a training run: the resolved settings (less logging, checkpoint cadence,
    device and cache; less the sampling settings, policy and judge for a method that does not
    sample) and the content of the records, the model and the adapter, and for a method that
    samples the policy's hash and the judge's identity (:func:`realign.provenance.produced_by`).
    Checkpoints and precomputed reference log-probs are resumed, and ``realign run`` skips the
    stage, only on an exact match."""
    from ..provenance import input_digest, model_digest
    from ..provenance import produced_by as record

    inputs = {"data": input_digest(config.data)}
    inputs.update({name: model_digest(getattr(config, name)) for name in ("model", "adapter")})
    ignore = ["out", "resume", "device", "logging_steps", "report_to", "save_steps", "save_total_limit", "cache"]
    if get_method(config.method).samples:
        from ..judges import make_judge
        from ..policy import Policy, resolve_policy

        if config.policy is not None and config.judge is not None:
            inputs["policy"] = Policy.load(resolve_policy(config.policy)).hash
            inputs["judge"] = make_judge(config.judge).identity
    else:  # settings only the sampling methods read: not part of the other methods' key
        ignore += ["policy", "judge", "sampling"]
    return record(config, inputs, ignore=ignore)


def _stale_state(out: Path, made: dict) -> str | None:
    """Why the run directory's checkpoints cannot be resumed (None: they can, or there are none)."""
    from ..provenance import what_changed

    if not any((out / "checkpoints").glob("checkpoint-*")):
        return None
    marker = out / ".config_key"
    try:
        before = json.loads(marker.read_text()) if marker.exists() else None
    except json.JSONDecodeError:
        before = None
    if isinstance(before, dict) and before.get("key") == made["key"]:
        return None
    return what_changed(before if isinstance(before, dict) else None, made)


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


def _write_fault(exc: BaseException, folder: Path) -> OSError | None:
    """A failed checkpoint or model write as an OSError naming the folder (the CLI prints one
    line, exit status 1 on a full disk), or None when ``exc`` is not a write failure. torch
    reports a full disk as ``RuntimeError: [enforce fail at inline_container.cc] ...``."""
    import errno

    if isinstance(exc, OSError):
        if exc.errno is None:
            return None
        return OSError(exc.errno, exc.strerror or str(exc), exc.filename or str(folder))
    text = str(exc)
    if not any(mark in text for mark in ("inline_container", "PytorchStreamWriter", "file write failed")):
        return None
    try:
        free = shutil.disk_usage(folder if folder.exists() else folder.parent).free
    except OSError:
        free = None
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if free is not None and free < 64 * 2**20:
        return OSError(errno.ENOSPC, f"No space left on device (writing a checkpoint: {first})", str(folder))
    return OSError(errno.EIO, f"cannot write a checkpoint ({first})", str(folder))


def run(config, progress: bool = True) -> dict:
    """Stage 3 on files: read records, build the method's terms, train, save the adapter
    (PEFT) or model (safetensors) with the resolved config and a training summary."""
    from ..files import check_output_paths, folder_lock

    check_output_paths(*paths(config))
    with folder_lock(config.out):
        return _run(config, progress)


def _run(config, progress: bool) -> dict:
    """The stage's work, under the lock of its run folder."""
    from ..config import resolved
    from ..data import read_pairs
    from ..files import write_json
    from ..models import resolve_device
    from ..provenance import provenance

    start = time.perf_counter()
    method = get_method(config.method)
    if method.samples and (config.policy is None or config.judge is None):
        raise RealignError(f"method {method.name!r} samples the model and judges the samples: set `policy` and `judge` "
                           "in the train config (`realign run` gives it the run's)")
    out = Path(config.out)
    made = produced_by(config)
    resume_from = _resume_point(config, out, made)
    loaded = read_pairs(config.data, invert_order=config.invert_order)
    if loaded.duplicates_line():
        print(f"train: {loaded.duplicates_line()}", file=sys.stderr)
    records = loaded.pairs
    options = MethodOptions(alpha_kl=config.alpha_kl, normalise=config.normalise, retain_pref=config.retain_pref,
                            retain_keep=config.retain_keep, objective=config.sampling.objective,
                            punish_without_y_c=config.punish_without_y_c)
    terms = method.terms(records, options) if method.samples is None else None
    if terms == [] or (method.samples and not records):
        raise RealignError(f"{config.data}: method {method.name!r} finds nothing to train on in {len(records)} records")

    state = process_state(config.device)
    if method.samples and state.num_processes > 1:
        raise RealignError(f"method {method.name!r} samples the model: run it in one process, not under "
                           "`accelerate launch` with several")
    device = state.device if state.num_processes > 1 else resolve_device(config.device)
    _clear_unresumed(out, resume_from, state)
    with _sample_cache(config, method) as cache:
        trainer, tokenizer, prepared = _setup(config, method, records, options, terms, cache, device, state,
                                              resume_from, made, progress)
        train_loss = _train(trainer, resume_from, out / "checkpoints")
    final = _save(config, trainer, tokenizer, out, state)
    summary = {
        "stage": "train",
        "method": {"name": method.name, "description": method.description},
        "terms": _term_counts(trainer),
        "records": len(records),
        **_trained(config, trainer, train_loss),
        "budget": _budget(config, method, records, trainer, prepared),
        "saved": str(final),
        "resumed": bool(resume_from),
        "wall_s": round(time.perf_counter() - start, 3),
        "config": resolved(config),
        "produced_by": made,
        "provenance": provenance(),
    }
    if prepared is not None:
        summary["samples"] = {k: prepared[k] for k in ("prompts", "samples", "passed", "failed", "abstained")}
    if state.is_main_process:
        summary["outputs"] = output_digests(out / "train_summary.json", [final])
        write_json(out / "train_summary.json", summary)
    state.wait_for_everyone()
    return summary


def _sample_cache(config, method):
    """The verdict and sample cache of a method that samples the model (a context; nothing for the others)."""
    from contextlib import nullcontext

    if not method.samples:
        return nullcontext(None)
    from ..judges.cache import VerdictCache

    return VerdictCache(config.cache_path(), commit_every=32)


def _setup(config, method, records, options, terms, cache, device, state, resume_from, made: dict,
           progress: bool) -> tuple[RealignTrainer, object, dict | None]:
    """The model, the method's terms (self-distill: from its judged samples, drawn first) and the
    trainer, with the budget of a resumed checkpoint taken back; the tokenizer; and self-distill's
    samples summary (None for the other methods)."""
    from dataclasses import replace

    from ..config import resolved
    from ..files import write_text, write_yaml
    from .sampling import Budget, old_prompts, prepare_samples

    out = Path(config.out)
    model, tokenizer, reference = _load(config, device)
    pad_id = pad_token_id(tokenizer)
    budget, prepared = Budget(), None
    if method.samples == "before":
        samples, prepared = prepare_samples(config, records, model, tokenizer, budget, progress)
        terms = method.terms(records, replace(options, samples=tuple(samples)))
        if not terms:
            raise RealignError(f"{out / 'samples.jsonl'}: method {method.name!r} finds nothing to train on: the judge "
                               f"passed {prepared['passed']} and failed {prepared['failed']} of {len(samples)} samples")
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_yaml(out / "train_config.yaml", resolved(config))
        write_text(out / ".config_key", json.dumps(made))
    if method.samples == "online":
        trainer = _online_trainer(config, method, options, old_prompts(records), model, tokenizer, cache, budget,
                                  state, device, progress)
    else:
        dataset = TermDataset(terms, tokenizer, config.max_length)
        _reference_logps(config, dataset, model, reference, pad_id, device, state, resume_from, progress)
        trainer = _build_trainer(config, method, model, dataset, TermCollator(dataset, pad_id, dataset.components),
                                 dataset.components, _reference_copy(config, model, dataset), state, device, progress,
                                 budget=budget)
    if resume_from:
        trainer.load_budget_state(resume_from)
    return trainer, tokenizer, prepared


def _online_trainer(config, method, options, prompts, model, tokenizer, cache, budget, state, device, progress):
    """online-dpo's trainer (:mod:`realign.train.online`): micro-batches of prompts, sampled and judged each step."""
    from .online import OnlineTrainer, PromptDataset, collate_indices
    from .sampling import Sampler

    if config.sampling.judge_budget is not None and config.sampling.judge_budget < 2 * config.batch_size * config.gradient_accumulation:
        raise RealignError(f"field 'sampling.judge_budget': {config.sampling.judge_budget} does not pay for one step of "
                           f"{method.name!r} (2 samples x {config.batch_size} prompts x {config.gradient_accumulation} "
                           "micro-batches judged)")
    sampler = Sampler(config, model, tokenizer, budget, cache)
    ref_model = _reference_copy(config, model, None)
    return _build_trainer(config, method, model, PromptDataset(prompts), collate_indices, ["L_pref"], ref_model, state,
                          device, progress, budget=budget, trainer_class=OnlineTrainer, prompts=prompts,
                          sampler=sampler, realign_method=method, options=options, tokenizer=tokenizer,
                          max_length=config.max_length, pad_id=pad_token_id(tokenizer))


def _term_counts(trainer: RealignTrainer) -> dict[str, int]:
    """Terms per component: of the term dataset, or (online-dpo) the pairs the judge split."""
    dataset = trainer.train_dataset
    if isinstance(dataset, TermDataset):
        return {c: sum(1 for it in dataset.items if it.component == c) for c in dataset.components}
    return {"L_pref": len(getattr(trainer, "pairs", []))}


def _budget(config, method, records, trainer: RealignTrainer, prepared: dict | None) -> dict:
    """train_summary.json's ``budget``: judge calls (a method that samples: the distinct responses
    it had judged; any other: those its records' triage judged — TRACE's budget), the judge
    backend's requests, generated and training tokens, and wall time (training, plus
    self-distill's sampling)."""
    from ..metrics.costs import FROM_SAMPLES, FROM_TRIAGE
    from .sampling import triage_judgements

    trainer.tick()
    b = trainer.budget
    own = method.samples is not None
    return {
        "judge_calls": b.judgements if own else triage_judgements(records),
        "judge_calls_from": FROM_SAMPLES if own else FROM_TRIAGE,
        "judge_budget": config.sampling.judge_budget if own else None,
        "backend_calls": b.backend_calls if own else None,
        "generated_tokens": b.generated_tokens,
        "training_tokens": b.training_tokens,
        "wall_s": round(b.train_s + (prepared["wall_s"] if prepared else 0.0), 3),
    }


def paths(config) -> Paths:
    """What the stage reads and writes: checked before anything is loaded, so that no output
    changes an input (no input lies in the run folder, and the run folder is not in the model's,
    whose digest would then change with every run, so that resuming never matched) and every
    output can be written."""
    return Paths(
        {"--data": config.data, "--model": config.model, "--adapter": config.adapter},
        {f"the run's {name}": Path(config.out) / name
         for name in ("train_config.yaml", ".config_key", "reference_logps.pt", "train_summary.json", "samples.jsonl",
                      "samples.summary.json")},
        {"--out": config.out, **{f"the run's {name}/": Path(config.out) / name for name in (
            "checkpoints", "adapter", ".adapter.partial", ".adapter.old", "model", ".model.partial", ".model.old")}},
    )


def _resume_point(config, out: Path, made: dict) -> str | None:
    """The checkpoint to resume from: the last complete one when the run directory holds
    checkpoints of these settings and inputs and ``resume`` is on (None: train from scratch)."""
    checkpoints = out / "checkpoints"
    if not (checkpoints.exists() and any(checkpoints.glob("checkpoint-*"))):
        return None
    if not config.resume:
        raise RealignError(f"{out}: holds checkpoints of an earlier run; use a new --out, or resume")
    stale = _stale_state(out, made)
    if stale is not None:
        print(f"train: not resuming the checkpoints in {out} ({stale}); training from scratch", file=sys.stderr)
        return None
    return _last_complete_checkpoint(checkpoints)


def _clear_unresumed(out: Path, resume_from: str | None, state) -> None:
    """Checkpoints not resumed (stale, or unfinished) go, with the files derived from them.

    The main process alone looks and clears; every process then waits here exactly once. (When
    each process looked for itself, a process that reached this point late could find the
    ``checkpoints/`` folder the main process's trainer had just created, wait at a barrier the
    main process had passed, and both hung until the process group's timeout.)"""
    checkpoints = out / "checkpoints"
    if state.is_main_process and resume_from is None and checkpoints.exists():
        shutil.rmtree(checkpoints)
        for name in ("reference_logps.pt", "train_summary.json"):
            (out / name).unlink(missing_ok=True)
    state.wait_for_everyone()


def _load(config, device):
    """The model to train (any ``adapter`` merged in; with LoRA, a fresh adapter on the frozen
    model), its tokenizer, and the context in which it computes as the reference."""
    from contextlib import nullcontext

    from ..models import attach_lora, load_causal_lm, load_tokenizer

    model = load_causal_lm(config.model, device=str(device), dtype="float32")
    tokenizer = load_tokenizer(config.model, padding_side="right")
    if config.adapter is not None:
        from ..models import load_adapter

        model = load_adapter(model, config.adapter).merge_and_unload()
    if config.finetune == "lora":
        model.requires_grad_(False)
        model = attach_lora(model, config.lora.r, config.lora.alpha, config.lora.targets, config.seed, config.lora.dropout)
        return model, tokenizer, model.disable_adapter
    return model, tokenizer, nullcontext


def _reference_logps(config, dataset: TermDataset, model, reference, pad_id: int, device, state,
                     resume_from: str | None, progress: bool) -> None:
    """With ``precompute_ref``: the reference log-probs of every term, read back when resuming,
    else computed once and kept in ``reference_logps.pt``."""
    from ..files import atomic_open

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


def _reference_copy(config, model, dataset: TermDataset | None):
    """A frozen copy of the model as the reference, for full fine-tuning when a step needs
    reference logits (KL terms, or log-probs not precomputed: always for ``dataset`` None, the
    terms online-dpo builds as it trains); None otherwise."""
    needs_kl = dataset is None or any(it.kind == KIND_INDEX["kl"] for it in dataset.items)
    if config.finetune == "full" and (needs_kl or not config.precompute_ref):
        import copy

        return copy.deepcopy(model).eval().requires_grad_(False)
    return None


def _build_trainer(config, method, model, dataset, collator, components: list[str], ref_model, state, device,
                   progress: bool, trainer_class=None, **kwargs) -> RealignTrainer:
    """The Trainer (``trainer_class``, default :class:`RealignTrainer`, given ``kwargs``) over
    ``dataset`` batched by ``collator``, with realign's TrainingArguments and ``trainer_args``."""
    extra = dict(config.trainer_args)
    # every trainable weight takes part in every forward pass (the reference is the adapter
    # disabled under no_grad, or a separate copy): DDP need not search for unused ones
    extra.setdefault("ddp_find_unused_parameters", False)
    args = TrainingArguments(
        output_dir=str(Path(config.out) / "checkpoints"),
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=math.ceil(config.warmup_ratio * _total_steps(config, len(dataset), state.num_processes)),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        report_to=config.report_to,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=not progress,
        use_cpu=device.type == "cpu",
        **_checkpointing(config.gradient_checkpointing),
        **_precision(config, device),
        **extra,
    )
    trainer = (trainer_class or RealignTrainer)(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        loss_options={
            "beta": config.beta,
            "preference_loss": method.preference_loss or config.preference_loss,
            "nll_weight": config.nll_weight,
            "nll_retain": config.nll_retain,
            "rdpo_epsilon": config.rdpo_epsilon,
            "components": components,
        },
        ref_model=ref_model,
        **kwargs,
    )
    if not progress:  # without the progress bar, transformers would print every log line instead
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    return trainer


def _train(trainer: RealignTrainer, resume_from: str | None, checkpoints: Path) -> float:
    """Train (resuming from ``resume_from``); the mean training loss."""
    if resume_from is not None and _checkpoint_finished(resume_from):
        # Resumed from its final checkpoint, transformers takes one optimizer step more (and
        # changes the weights): load that checkpoint instead of training.
        from transformers.trainer_callback import TrainerState

        trainer._load_from_checkpoint(resume_from)
        trainer.state = TrainerState.load_from_json(str(Path(resume_from) / "trainer_state.json"))
        logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        return sum(logged) / len(logged) if logged else float("nan")
    try:
        return trainer.train(resume_from_checkpoint=resume_from).training_loss
    except (OSError, RuntimeError) as exc:
        fault = _write_fault(exc, checkpoints)
        if fault is None:
            raise
        raise fault from None


def _save(config, trainer: RealignTrainer, tokenizer, out: Path, state) -> Path:
    """Write the adapter (LoRA) or the model and its tokenizer to ``adapter/`` or ``model/``,
    through a staging folder renamed into place: a killed save leaves no torn output."""
    final = out / ("adapter" if config.finetune == "lora" else "model")
    staging = out / f".{final.name}.partial"
    if state.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    state.wait_for_everyone()
    # every process takes part (FSDP and DeepSpeed gather the weights); the Trainer writes on the main one
    if trainer.is_fsdp_enabled:
        # whole weights whatever the checkpoints' state-dict type: with SHARDED_STATE_DICT
        # (accelerate's FSDP2 default) save_model writes no weights at all
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    try:
        trainer.save_model(str(staging))
        if state.is_main_process:
            tokenizer.save_pretrained(str(staging))
            _replace_dir(staging, final)
    except (OSError, RuntimeError) as exc:
        fault = _write_fault(exc, staging)
        if fault is None:
            raise
        shutil.rmtree(staging, ignore_errors=True)
        raise fault from None
    return final


def _trained(config, trainer: RealignTrainer, train_loss: float) -> dict:
    """The summary's account of the training: truncation, processes, steps, losses."""
    return {
        "truncated_sequences": getattr(trainer.train_dataset, "truncated", None),
        "processes": {
            "count": trainer.args.world_size,
            "per_device_batch": config.batch_size,
            "global_batch": config.batch_size * config.gradient_accumulation * trainer.args.world_size,
        },
        "steps": trainer.state.global_step,
        "train_loss": train_loss,
        "log_history": trainer.state.log_history,
    }


def _last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest checkpoint whose ``trainer_state.json`` (the Trainer writes it last) parses.
    Newer ``checkpoint-*`` folders are the remains of a save cut short by a killed process:
    they are removed, so training resumes from the last complete one (None: start over)."""
    found = sorted(
        (int(p.name.split("-")[1]), p) for p in checkpoints.glob("checkpoint-*") if p.name.split("-")[1].isdigit()
    )
    for _, folder in reversed(found):
        try:
            json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
            return str(folder)
        except (OSError, ValueError):
            trash = folder.with_name(f".{folder.name}.incomplete")
            try:
                folder.rename(trash)  # another process of the same launch may have done it
            except OSError:
                pass
            shutil.rmtree(trash, ignore_errors=True)
    return None


def _checkpoint_finished(checkpoint: str) -> bool:
    """Whether a checkpoint was saved at the run's last optimizer step, or where the judge budget
    stopped the run (online-dpo, ``on_budget: stop``)."""
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    budget = Path(checkpoint) / BUDGET_STATE
    if budget.exists() and json.loads(budget.read_text(encoding="utf-8")).get("stopped"):
        return True
    return bool(state.get("max_steps")) and state.get("global_step", 0) >= state["max_steps"]


def _replace_dir(new: Path, dest: Path) -> None:
    """Put folder ``new`` at ``dest``, replacing what was there, by renames."""
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    new.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def _total_steps(config, n_terms: int, processes: int) -> int:
    if config.max_steps > 0:
        return config.max_steps
    per_epoch = math.ceil(n_terms / (config.batch_size * processes * config.gradient_accumulation))
    return max(1, math.ceil(per_epoch * config.epochs))


def merge(model: str, adapter: str, out: str | Path) -> Path:
    """Fold a LoRA adapter into its base model and save the result (safetensors) in folder
    ``out``, which must be neither input folder nor lie in or contain one."""
    from ..files import check_output_paths, folder_lock
    from ..models import load_adapter, load_causal_lm, load_tokenizer

    out = Path(out)
    check_output_paths({"--model": model, "--adapter": adapter}, {}, {"--out": out})
    with folder_lock(out):
        base = load_causal_lm(model, device="cpu", dtype="float32")
        merged = load_adapter(base, adapter).merge_and_unload()
        merged.save_pretrained(str(out), safe_serialization=True)
        load_tokenizer(model).save_pretrained(str(out))
    return out
