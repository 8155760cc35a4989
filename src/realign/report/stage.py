"""The report as ``realign run`` drives it (:class:`realign.runs.stage.Stage`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..runs.files import check_output_paths
from ..runs.stage import Paths
from .render import build_report


class ReportStage:
    """``report.html`` and ``report.md`` of a run folder, showing only the result files of the
    run's current config (``records``: its stages' summaries). It records no key and is
    rebuilt every run: it only reads what the other stages wrote."""

    name = "report"
    summary = None

    def __init__(self, out: Path, records: list[Path], inputs: dict[str, str | Path | None]) -> None:
        self.out = Path(out)
        self.records = records
        self.inputs = inputs  #: the run's input files, which no report may overwrite

    def paths(self) -> Paths:
        out = self.out
        return Paths(self.inputs, {"the run's report.html": out / "report.html", "the run's report.md": out / "report.md"},
                     {"the run's report_files/": out / "report_files"})

    def produced_by(self) -> None:
        """None: nothing records what made the reports, so they are rebuilt every run."""
        return None

    def preflight(self, check: Callable[..., None]) -> None:
        """No report overwrites an input."""
        check(check_output_paths, *self.paths())

    def run(self, progress: bool) -> dict:
        """Both reports; returns where the HTML one is."""
        build_report([self.out], self.out / "report.html", only=self.records)
        build_report([self.out], self.out / "report.md", only=self.records)
        return {"report": str(self.out / "report.html")}
