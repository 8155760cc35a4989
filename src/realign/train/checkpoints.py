"""A training run's checkpoints and outputs: whether the run folder's checkpoints are resumed (same
settings and inputs, :func:`resume_point`) or cleared (:func:`clear_unresumed`), training from the
last complete one (:func:`train_from`), and the trained adapter or model written in place by a
rename (:func:`save_trained`). A failed write is an OSError naming the folder."""

from __future__ import annotations

import errno
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RealignError
from ..runs.provenance import what_changed

if TYPE_CHECKING:
    from .trainer import RealignTrainer

#: The file in each checkpoint that keeps the budget spent so far (and online-dpo's state).
BUDGET_STATE = "budget_state.json"


def resume_point(config, out: Path, made: dict) -> str | None:
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


def _stale_state(out: Path, made: dict) -> str | None:
    """Why the run directory's checkpoints cannot be resumed (None: they can, or there are none)."""
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


def clear_unresumed(out: Path, resume_from: str | None, state) -> None:
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


def train_from(trainer: RealignTrainer, resume_from: str | None, checkpoints: Path) -> float:
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


def _write_fault(exc: BaseException, folder: Path) -> OSError | None:
    """A failed checkpoint or model write as an OSError naming the folder (the CLI prints one
    line, exit status 1 on a full disk), or None when ``exc`` is not a write failure. torch
    reports a full disk as ``RuntimeError: [enforce fail at inline_container.cc] ...``."""
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


def save_trained(config, trainer: RealignTrainer, tokenizer, out: Path, state) -> Path:
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


def _replace_dir(new: Path, dest: Path) -> None:
    """Put folder ``new`` at ``dest``, replacing what was there, by renames."""
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    new.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
