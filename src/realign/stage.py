"""Plumbing every stage shares: where a stage's summary lies and what it records of the
outputs beside it, the process state under ``accelerate launch``, and the token id that pads a
batch."""

from __future__ import annotations

import os
from pathlib import Path

from .models import resolve_device
from .provenance import input_digest


def summary_path(out: str | Path) -> Path:
    """``triaged.jsonl`` -> ``triaged.summary.json`` beside it."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl") + ".summary.json")


def output_digests(summary: str | Path, outputs: list[str | Path | None]) -> dict[str, str | None]:
    """The content identity (:func:`realign.provenance.input_digest`) of each output a stage
    wrote, by its path relative to the folder of the stage's ``summary``: recorded in the
    summary as ``outputs``, so that what reads the outputs later can tell they are still what
    was written (:func:`outputs_changed`)."""
    folder = Path(summary).parent
    return {os.path.relpath(path, folder): input_digest(path) for path in outputs if path is not None}


def outputs_changed(summary: str | Path, recorded) -> str | None:
    """Why the outputs a stage's ``summary`` records (``outputs``: :func:`output_digests`) cannot
    be reused — one is missing, or changed since the stage wrote it — or None when all are intact."""
    if not isinstance(recorded, dict) or not recorded:
        return "its summary does not record its outputs"
    folder = Path(summary).parent
    for rel, digest in recorded.items():
        path = folder / rel
        if not path.exists():
            return f"output {path} is missing"
        if input_digest(path) != digest:
            return f"output {path} changed since the stage wrote it"
    return None


def process_state(device: str):
    """accelerate's process state: one process, or one of those ``accelerate launch`` started.
    It must be told when the device is the CPU (also ``auto`` on a machine without GPUs): else
    processes launched there each believe they are alone, all work on everything and all write
    the outputs."""
    from accelerate import PartialState

    return PartialState(cpu=resolve_device(device).type == "cpu")


def pad_token_id(tokenizer) -> int:
    """The id that pads a batch: the tokenizer's pad token, else its end-of-sequence token."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
