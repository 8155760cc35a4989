"""Stage 1 as ``realign run`` drives it (:class:`realign.stage.Stage`)."""

from __future__ import annotations

from functools import cached_property
from typing import Callable

from ..data import read_pairs
from ..files import check_output_paths
from ..judges import make_judge
from ..judges.oracle import make_oracle
from ..policy import Policy
from ..stage import Paths, summary_path
from . import run


class TriageStage:
    """``realign triage`` of one config. Its policy and judge are built once, for the pre-flight
    check, the key its summary records and the run alike."""

    name = "triage"

    def __init__(self, config) -> None:
        self.config = config
        self.summary = summary_path(config.out)

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

    def run(self, progress: bool) -> dict:
        """Triage; the judge is let go afterwards (an hf judge's model is not held through training)."""
        try:
            return run.run(self.config, progress, self.judge, self.policy)
        finally:
            self.__dict__.pop("judge", None)
