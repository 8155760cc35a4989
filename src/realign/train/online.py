"""``online-dpo``'s training loop: the Trainer of every method (:class:`RealignTrainer`), whose
micro-batches are old prompts; at each step it samples two responses per prompt from the current
model, has the judge label them and trains the DPO terms of the pairs the judge splits
(:class:`realign.train.methods.OnlineDPO`), against the starting model (the adapter disabled, or
a frozen copy under full fine-tuning).

Not TRL's ``OnlineDPOTrainer``: it orders every pair by the reward, so with a pass/fail judge a
pair both pass (or both fail) is trained in its sampled order, and it has no verdict cache, no
judge budget and its own data and reference handling. Here the loss, the reference, the
checkpoints and the keys are the other methods'.

Budget (``sampling.judge_budget``): a step samples fresh only if what is left of the budget pays
for its worst case (two judgements per prompt of each of its micro-batches); once it does not,
``on_budget: stop`` ends training after the last paid step (a checkpoint is written there), and
``reuse`` trains each later micro-batch on ``batch_size`` pairs drawn from those already judged.

Resume is exact: a step's samples are seeded by (seed, step, micro-batch) alone (the trainer's
own RNG is untouched), and each checkpoint holds the budget counters, the pairs judged so far and
whether the budget stopped the run (``budget_state.json``, written before the Trainer's state,
so a checkpoint the Trainer considers complete has it).
"""

from __future__ import annotations

import random
from dataclasses import replace

import torch
from transformers import TrainerCallback

from .dataset import TermCollator, TermDataset
from .methods import JudgedSample
from .trainer import RealignTrainer


class PromptDataset(torch.utils.data.Dataset):
    """The old prompts, one item each: a micro-batch is a list of prompt indices."""

    def __init__(self, prompts: list) -> None:
        self.prompts = prompts

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: int) -> dict:
        return {"index": index}


def collate_indices(features: list[dict]) -> dict[str, torch.Tensor]:
    return {"index": torch.tensor([f["index"] for f in features])}


class OnlineTrainer(RealignTrainer):
    """The trainer of ``online-dpo`` (module docstring)."""

    def __init__(self, *args, prompts: list, sampler, realign_method, options, tokenizer, max_length: int, pad_id: int,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.prompts, self.sampler, self.method, self.options = prompts, sampler, realign_method, options
        self.encode_with, self.max_length, self.pad_id = tokenizer, max_length, pad_id
        self.pairs: list[tuple[int, str, str]] = []  # (prompt index, passed, failed) judged so far
        self.stopped = False
        self._step, self._micro, self._fresh = -1, 0, True
        self.add_callback(_BudgetStop(self))

    def step_cost(self) -> int:
        """The most judgements one optimizer step can take: two per prompt of every micro-batch."""
        return 2 * self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps

    def extra_state(self) -> dict:
        return {"pairs": self.pairs, "stopped": self.stopped}

    def load_extra_state(self, state: dict) -> None:
        self.pairs = [tuple(p) for p in state.get("pairs", [])]
        self.stopped = bool(state.get("stopped"))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        step = self.state.global_step
        if step != self._step:  # the first micro-batch of a step decides for the whole step
            self._step, self._micro = step, 0
            self._fresh = self.sampler.affordable(self.step_cost())
        seed = self.args.seed * 1_000_003 + step * 1009 + self._micro
        self._micro += 1
        index = inputs["index"].tolist()
        terms = self._fresh_terms(index, seed) if self._fresh else self._replayed_terms(len(index), seed)
        if not terms:  # every pair tied: nothing to learn from this micro-batch
            zero = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
            return (zero, {}) if return_outputs else zero
        dataset = TermDataset(terms, self.encode_with, self.max_length)
        batch = TermCollator(dataset, self.pad_id, self.loss_options["components"])(
            [{"index": i} for i in range(len(terms))])
        batch = {k: v.to(self.args.device) for k, v in batch.items()}
        return super().compute_loss(model, batch, return_outputs, num_items_in_batch)

    def _fresh_terms(self, index: list[int], seed: int) -> list:
        """Two samples of each prompt from the current model (the one the sampler holds: this
        trainer's, in one process), judged; the split pairs' terms."""
        prompts = [self.prompts[i] for i in index]
        texts = self.sampler.generate(prompts + prompts, seed)
        self.sampler.count_tokens(texts)
        verdicts = self.sampler.judge(prompts + prompts, texts)
        n, terms = len(prompts), []
        for k, i in enumerate(index):  # the method decides which pairs train (ties do not)
            made = self._judged([JudgedSample(prompts[k], texts[j], verdicts[j]) for j in (k, n + k)])
            self.pairs += [(i, t.first, t.second) for t in made]
            terms += made
        return terms

    def _replayed_terms(self, count: int, seed: int) -> list:
        """``count`` pairs judged earlier, drawn at random (seeded), as terms."""
        if not self.pairs:
            return []
        chosen = random.Random(seed).sample(self.pairs, min(count, len(self.pairs)))
        return [t for i, passed, failed in chosen for t in self._terms(i, passed, failed)]

    def _terms(self, i: int, passed: str, failed: str) -> list:
        """The terms of a pair judged earlier."""
        prompt = self.prompts[i]
        return self._judged([JudgedSample(prompt, passed, True), JudgedSample(prompt, failed, False)])

    def _judged(self, samples: list[JudgedSample]) -> list:
        """The method's terms of one prompt's judged samples."""
        return self.method.terms([], replace(self.options, samples=tuple(samples)))


class _BudgetStop(TrainerCallback):
    """``on_budget: stop``: after a step, if the budget cannot pay for the next one, training
    stops and a checkpoint is written at that step (marked ``stopped``, so a resumed run ends there)."""

    def __init__(self, trainer: OnlineTrainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        t = self.trainer
        if t.sampler.settings.on_budget == "stop" and not t.sampler.affordable(t.step_cost()):
            t.stopped = True
            control.should_training_stop = True
            control.should_save = True
        return control
