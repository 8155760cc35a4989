"""Stage 2 as ``realign run`` drives it (:class:`realign.runs.stage.Stage`)."""

from __future__ import annotations

from typing import Callable

from ..runs.files import check_output_paths
from ..runs.stage import Paths, summary_path
from . import run


class ScoreStage:
    """``realign score`` of one config."""

    name = "score"

    def __init__(self, config) -> None:
        self.config = config
        self.summary = summary_path(config.out)

    def paths(self) -> Paths:
        return run.paths(self.config)

    def produced_by(self) -> dict:
        return run.produced_by(self.config)

    def preflight(self, check: Callable[..., None]) -> None:
        """No output destroys an input (the triaged records it reads do not exist yet)."""
        check(check_output_paths, *self.paths())

    def run(self, progress: bool) -> dict:
        return run.run(self.config, progress)
