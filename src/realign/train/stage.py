"""Stage 3 as ``realign run`` drives it (:class:`realign.runs.stage.Stage`). The stage's module
(:mod:`.run`) loads torch and transformers, so it is imported when first asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..runs.files import check_output_paths
from ..modeling.sources import check_model_source
from ..runs.stage import Paths


class TrainStage:
    """``realign train`` of one config: one method."""

    def __init__(self, config) -> None:
        self.config = config
        self.name = f"train:{config.method}"
        self.summary = Path(config.out) / "train_summary.json"

    def paths(self) -> Paths:
        from . import run

        return run.paths(self.config)

    def produced_by(self) -> dict:
        from . import run

        return run.produced_by(self.config)

    def preflight(self, check: Callable[..., None]) -> None:
        """The adapter it starts from resolves, and no output destroys an input (its
        ``trainer_args`` were checked when the config was validated)."""
        if self.config.adapter is not None:
            check(check_model_source, self.config.adapter, "adapter")
        check(lambda: check_output_paths(*self.paths()))

    def run(self, progress: bool) -> dict:
        from . import run

        return run.run(self.config, progress)
