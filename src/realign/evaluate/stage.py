"""``realign eval`` as ``realign run`` drives it (:class:`realign.runs.stage.Stage`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..runs.files import check_output_paths
from ..metrics.prompts import load_rows
from ..runs.stage import JudgedStage
from . import run
from .attacks import load_templates


class EvalStage(JudgedStage):
    """``realign eval`` of one model state of the run (``base`` or a method's;
    :class:`realign.runs.stage.JudgedStage`)."""

    steps = run

    def __init__(self, config) -> None:
        super().__init__(config)
        self.name = f"eval:{config.label}"
        self.summary = Path(config.out)

    def preflight(self, check: Callable[..., None]) -> None:
        """The prompts hold rows (under the policy), the attacks, templates and texts parse, and
        no output destroys an input."""
        config = self.config
        check(lambda: load_rows(config.prompts, self.policy))
        if config.attacks:
            check(load_rows, config.attacks)
            check(load_templates, config.attack_templates)
        if config.text:
            check(run.load_rows_or_text, config.text)
        check(check_output_paths, *self.paths())
