"""The ``trainer_args`` of a training config: extra transformers.TrainingArguments fields passed
through to the Trainer. Checked once, when the config is validated (:class:`realign.config.TrainConfig`,
whose fields are validated on assignment too), so before a run loads a model or writes a file;
transformers is imported only when a config names some."""

from __future__ import annotations

import dataclasses
import difflib

from ..errors import shorten

#: TrainingArguments realign sets from its own options (``trainer_args`` may not set them)
_SET_BY_REALIGN = {
    "output_dir": "out", "learning_rate": "learning_rate", "lr_scheduler_type": "lr_scheduler",
    "warmup_steps": "warmup_ratio", "num_train_epochs": "epochs", "max_steps": "max_steps",
    "per_device_train_batch_size": "batch_size", "gradient_accumulation_steps": "gradient_accumulation",
    "weight_decay": "weight_decay", "max_grad_norm": "max_grad_norm", "seed": "seed",
    "logging_steps": "logging_steps", "save_steps": "save_steps", "save_total_limit": "save_total_limit",
    "report_to": "report_to", "remove_unused_columns": None, "dataloader_num_workers": None,
    "disable_tqdm": "quiet", "use_cpu": "device", "bf16": "precision", "fp16": "precision",
}

#: TrainingArguments settings that turn on evaluation during training, each with the test of
#: its value that does: the Trainer is never given an evaluation set (every record is trained
#: on; held-out evaluation is ``realign eval``'s), so transformers would stop with a traceback
_NEEDS_EVAL_SET = {
    "eval_strategy": lambda v: str(v).lower() != "no",
    "load_best_model_at_end": bool,
    "eval_on_start": bool,
    "save_strategy": lambda v: str(v).lower() == "best",
    "lr_scheduler_type": lambda v: str(v).lower() in ("reduce_lr_on_plateau", "greedy"),
}


def eval_set_problem(name: str, value) -> str | None:
    """Why the TrainingArguments setting ``name: value`` cannot be used (it needs an evaluation
    set, which realign's Trainer does not have), or None."""
    needs = _NEEDS_EVAL_SET.get(name)
    if needs is None or not needs(value):
        return None
    return (f"{shorten(value)} needs an evaluation set during training, which realign's trainer does not have "
            "(it trains on every record; evaluate the result with `realign eval`)")


def trainer_args_problem(extra: dict) -> str | None:
    """What is wrong with ``trainer_args``, if anything: a name that is not a
    transformers.TrainingArguments field, one realign sets from its own options, or a setting
    that needs an evaluation set (:func:`eval_set_problem`)."""
    from transformers import TrainingArguments

    known = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    for key in extra:
        name = str(key) if len(str(key)) <= 60 else str(key)[:57] + "..."
        if key in _SET_BY_REALIGN:
            own = _SET_BY_REALIGN[key]
            return f"{name!r} is set by realign" + (f" from its own option {own!r}; set that instead" if own else "")
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            return f"{name!r} is not a transformers.TrainingArguments field" + (f" (did you mean {close[0]!r}?)" if close else "")
        problem = eval_set_problem(key, extra[key])
        if problem is not None:
            return f"{name!r}: {problem}; remove it"
    return None

