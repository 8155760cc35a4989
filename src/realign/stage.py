"""Plumbing every stage shares: where a stage's summary lies, the process state under
``accelerate launch``, and the token id that pads a batch."""

from __future__ import annotations

from pathlib import Path


def summary_path(out: str | Path) -> Path:
    """``triaged.jsonl`` -> ``triaged.summary.json`` beside it."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl") + ".summary.json")


def process_state(device: str):
    """accelerate's process state: one process, or one of those ``accelerate launch`` started.
    It must be told when the device is the CPU (also ``auto`` on a machine without GPUs): else
    processes launched there each believe they are alone, all work on everything and all write
    the outputs."""
    from accelerate import PartialState

    from .models import resolve_device

    return PartialState(cpu=resolve_device(device).type == "cpu")


def pad_token_id(tokenizer) -> int:
    """The id that pads a batch: the tokenizer's pad token, else its end-of-sequence token."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
