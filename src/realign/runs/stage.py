"""What every stage is and shares: the :class:`Stage` protocol ``realign run`` drives, where a
stage's summary lies and what it records of the outputs beside it, the process state under
``accelerate launch``, and the token id that pads a batch."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Callable, NamedTuple, Protocol, runtime_checkable

from ..judges import Judge, make_judge
from ..modeling.loading import resolve_device
from ..policy import Policy
from .provenance import input_digest


class Paths(NamedTuple):
    """What a stage reads and writes, each path by the name its errors give it (``"--data"``,
    ``"the summary of --out"``): the inputs, the files it writes and the folders it fills — the
    three arguments of :func:`realign.runs.files.check_output_paths`, which refuses outputs that would
    destroy an input or each other before any work."""

    inputs: dict[str, str | Path | None]
    outputs: dict[str, str | Path | None]
    folders: dict[str, str | Path | None] | None = None


@runtime_checkable
class Stage(Protocol):
    """One stage as ``realign run`` drives it (triage, score, train, eval, report: each package's
    ``stage`` module holds its one). The pipeline asks the stage, never its internals: what it
    reads and writes, whether its outputs are up to date (the ``produced_by`` key its summary
    records, :mod:`realign.runs.provenance`), what is wrong before any stage runs, and to run."""

    #: how the run's log and result name it: ``triage``, ``score``, ``train:METHOD``, ``eval:NAME``, ``report``
    name: str
    #: the file recording its ``produced_by`` key and ``outputs`` (:func:`output_digests`); None
    #: for a stage that records neither and runs every time (the report)
    summary: Path | None

    def paths(self) -> Paths:
        """What it reads and writes (:class:`Paths`)."""

    def produced_by(self) -> dict | None:
        """The key of its settings and input contents its summary records: the stage is skipped
        only when the recorded key is this one and its recorded outputs are intact. None for a
        stage without a summary."""

    def preflight(self, check: Callable[..., None]) -> None:
        """Before the first stage runs: each thing that could stop it later (a file that does not
        parse, a judge that cannot be built, an output that would destroy an input) passed to
        ``check(action, *args)``, which collects every problem to report them at once."""

    def run(self, progress: bool) -> dict:
        """Do the stage's work and write its outputs and summary; returns the summary."""


class JudgedStage:
    """What a stage that judges responses against the new policy (triage, eval) shares: its
    policy and judge are built once, for the pre-flight check, the key its summary records and
    the run alike, and the judge is let go after the run (an hf judge's model is not held through
    the stages after it). A subclass names its ``run`` module (``paths``, ``produced_by``, ``run``)
    and writes its own ``preflight``."""

    #: the stage's module: ``paths(config)``, ``produced_by(config, judge, policy)``, ``run(config, progress, judge, policy)``
    steps: ModuleType

    def __init__(self, config) -> None:
        self.config = config

    @cached_property
    def policy(self) -> Policy:
        return Policy.load(self.config.policy)

    @cached_property
    def judge(self) -> Judge:
        return make_judge(self.config.judge)

    def paths(self) -> Paths:
        return self.steps.paths(self.config)

    def produced_by(self) -> dict:
        return self.steps.produced_by(self.config, self.judge, self.policy)

    def run(self, progress: bool) -> dict:
        """Run the stage, then let the judge go."""
        try:
            return self.steps.run(self.config, progress, self.judge, self.policy)
        finally:
            self.__dict__.pop("judge", None)


def summary_path(out: str | Path) -> Path:
    """``triaged.jsonl`` -> ``triaged.summary.json`` beside it."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl") + ".summary.json")


def output_digests(summary: str | Path, outputs: list[str | Path | None]) -> dict[str, str | None]:
    """The content identity (:func:`realign.runs.provenance.input_digest`) of each output a stage
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
