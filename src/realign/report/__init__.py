"""Reports: what one or more runs produced, as one self-contained HTML page or a Markdown file.

A run directory is read tolerantly: every file below it (up to :data:`SEARCH_DEPTH` levels)
named ``metrics.json`` (``realign eval``), ``*.summary.json`` with ``"stage": "triage"``
(``realign triage``) or ``"stage": "score"`` (``realign score``), or ``train_summary.json``
(``realign train``) is used; any of them may be missing, and a metrics file can also be
named directly. The report then shows

* a summary per run against its before, with what each trained run spent (judge calls,
  generated and training tokens, train-stage wall time: :func:`.collect.run_cost`);
* a comparison table across runs and methods: Target Policy Agreement (TPA) overall with its
  95 % interval, slice-mean and balanced agreement, attack success and unclassified attack
  responses (pooled over the jailbreak templates), benign accuracy, degenerate and harmful
  rates, perplexity and KL to the reference; the base model's numbers ("before") as their own
  rows;
* the evaluation sections below once per policy the runs were judged under (numbers under
  different policies are never side by side), the policy named in the header and above each
  of their tables;
* TPA per slice (and on the triaged-prompt slices INVERT / PUNISH / RETAIN), as a table and
  as a grouped bar chart before and after, with the 95 % intervals as error bars;
* attack success per jailbreak template (table and chart);
* the impact-weight histogram per category (INVERT, PUNISH) of every ``score`` stage;
* triage counts (bar chart);
* loss components over training steps (one panel per component, one line per run);
* win rates from ``realign winrate`` result files (any ``*winrate*.json`` with
  ``"stage": "winrate"``).

A piece that no run has is left out with a one-line note. Rates are shown as percentages
with one decimal. Figures are drawn with matplotlib's Agg renderer (no display needed);
HTML embeds them as base64 PNG data URIs (one file, no external assets), Markdown writes
them beside the report in ``<stem>_files/`` and links them.

* :mod:`.collect` — the result files of each run directory, read and labelled;
* :mod:`.rows` — the rows compared: each evaluation, the base model's numbers, each run's before;
* :mod:`.figures` — the charts: what each shows (:class:`.figures.Figure`) and their style; one
  module per family: :mod:`.rate_figures`, :mod:`.stage_figures`, :mod:`.calibration_figure`,
  :mod:`.change_figures`;
* :mod:`.blocks` — what a page is made of (sections, tables, notes) and how numbers are shown;
* :mod:`.changes`, :mod:`.summary` — what each run changed against its before, and the summary;
* :mod:`.sections` — the document: its sections of tables, figures and notes;
* :mod:`.render` — HTML and Markdown, and :func:`build_report`, the entry point;
* :mod:`.stage` — the reports of a run folder as ``realign run`` drives them (:class:`realign.runs.stage.Stage`).
"""

from .collect import SEARCH_DEPTH, RunData, collect
from .figures import Figure
from .render import build_report

__all__ = ["SEARCH_DEPTH", "Figure", "RunData", "build_report", "collect"]
