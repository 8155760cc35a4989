"""``realign eval`` as ``realign run`` drives it (:class:`realign.stage.Stage`)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Callable

from ..files import check_output_paths
from ..judges import make_judge
from ..metrics.prompts import load_rows
from ..policy import Policy
from ..stage import Paths
from . import run
from .attacks import load_templates


class EvalStage:
    """``realign eval`` of one model state of the run (``base`` or a method's). Its policy and
    judge are built once, for the pre-flight check, the key its metrics record and the run."""

    def __init__(self, config) -> None:
        self.config = config
        self.name = f"eval:{config.label}"
        self.summary = Path(config.out)

    @cached_property
    def policy(self) -> Policy:
        return Policy.load(self.config.policy)

    @cached_property
    def judge(self):
        return make_judge(self.config.judge)

    def paths(self) -> Paths:
        return run.paths(self.config)

    def produced_by(self) -> dict:
        return run.produced_by(self.config, self.judge, self.policy)

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

    def run(self, progress: bool) -> dict:
        """Evaluate; the judge is let go afterwards (an hf judge's model is not held on)."""
        try:
            return run.run(self.config, progress, self.judge, self.policy)
        finally:
            self.__dict__.pop("judge", None)
