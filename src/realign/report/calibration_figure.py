"""A judge's calibration as a picture: the reliability diagram of the judge audit (:mod:`.audit`)."""

from __future__ import annotations

from typing import Sequence

from .figures import BASELINE_COLOUR, RUN_COLOURS, new_figure, render


def reliability_diagram(bins: Sequence[dict], ece: float, n: int) -> bytes:
    """A judge's P(compliant) against the labelled share compliant, one point per bin with its
    95 % interval (the diagonal is perfect calibration), and the responses per bin below.
    ``bins``: the ``calibration.bins`` of :func:`realign.judges.audit.calibration`."""

    def draw():
        fig = new_figure(5.2, 5.4)
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
        top.plot([0, 1], [0, 1], linestyle="--", color=BASELINE_COLOUR, linewidth=1, label="perfect calibration")
        xs = [b["mean_p"] for b in bins]
        ys = [b["observed"]["rate"] for b in bins]
        lo = [max(0.0, y - b["observed"]["ci95"][0]) for y, b in zip(ys, bins)]
        hi = [max(0.0, b["observed"]["ci95"][1] - y) for y, b in zip(ys, bins)]
        top.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", color=RUN_COLOURS[0], markersize=5, elinewidth=0.9,
                     capsize=2.5, label="judge")
        top.set_xlim(-0.02, 1.02)
        top.set_ylim(-0.02, 1.02)
        top.set_ylabel("labelled compliant")
        top.grid(True, axis="both")
        top.legend(frameon=False, loc="upper left")
        top.set_title(f"Reliability of P(compliant): {n} responses, ECE {ece:.3f}")
        bottom.bar([(b["lo"] + b["hi"]) / 2 for b in bins], [b["n"] for b in bins],
                   width=[0.9 * (b["hi"] - b["lo"]) for b in bins], color=RUN_COLOURS[0], alpha=0.7)
        bottom.set_xlabel("judge's P(compliant)")
        bottom.set_ylabel("responses")
        return fig

    return render(draw)
