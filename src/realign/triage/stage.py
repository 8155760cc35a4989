"""Stage 1 as ``realign run`` drives it (:class:`realign.runs.stage.Stage`)."""

from __future__ import annotations

from typing import Callable

from ..data import read_pairs
from ..runs.files import check_output_paths
from ..judges.oracle import make_oracle
from ..runs.stage import JudgedStage, summary_path
from . import run


class TriageStage(JudgedStage):
    """``realign triage`` of one config (:class:`realign.runs.stage.JudgedStage`)."""

    name = "triage"
    steps = run

    def __init__(self, config) -> None:
        super().__init__(config)
        self.summary = summary_path(config.out)

    def preflight(self, check: Callable[..., None]) -> None:
        """The pairs parse, the policy loads, the judge (and oracle) can be built, the rules
        judge has rules that can decide, and no output destroys an input."""
        config = self.config
        check(lambda: read_pairs(config.data, split=config.split, skip_invalid=config.skip_invalid,
                                 invert_order=config.invert_order))
        check(lambda: self.policy)
        check(lambda: self.judge)
        if config.judge.backend == "rules":
            check(lambda: self.judge.compiled(self.policy))
        if config.oracle is not None:
            check(make_oracle, config.oracle)
        check(check_output_paths, *self.paths())
