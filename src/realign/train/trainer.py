"""The Hugging Face Trainer of every method (:class:`RealignTrainer`): its loss is
:func:`realign.train.loss.term_losses`, it stops on a diverged loss, logs each loss component and
keeps the run's budget in every checkpoint; and the TrainingArguments realign gives it
(:func:`build_trainer`).

With LoRA the reference is the same model with its adapter disabled (no second copy), and
reference log-probs are precomputed once by default, so the reference pass only runs for the KL
term's full-vocabulary distributions."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import defaultdict
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

from ..errors import RealignError
from ..runs.files import write_json
from .checkpoints import BUDGET_STATE
from .loss import term_losses
from .reference import reference_rows
from .sampling import Budget


class TrainingDiverged(RealignError):
    """A NaN or infinite loss: the run stops; checkpoints already written stay intact."""


class RealignTrainer(Trainer):
    """``Trainer`` whose loss is a weighted mix of term kinds (see module docstring)."""

    def __init__(self, *args, loss_options: dict, ref_model=None, budget=None, **kwargs) -> None:
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


def build_trainer(config, method, model, dataset, collator, components: list[str], ref_model, state, device,
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
    name = "activation_checkpointing" if any(
        f.name == "activation_checkpointing" for f in dataclasses.fields(TrainingArguments)) else "gradient_checkpointing"
    return {name: True, f"{name}_kwargs": {"use_reentrant": False}}


def _total_steps(config, n_terms: int, processes: int) -> int:
    if config.max_steps > 0:
        return config.max_steps
    per_epoch = math.ceil(n_terms / (config.batch_size * processes * config.gradient_accumulation))
    return max(1, math.ceil(per_epoch * config.epochs))
