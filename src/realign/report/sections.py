"""The report's document: its sections of tables, figures and notes (:mod:`.blocks`), built from
the runs found (:mod:`.collect`, :mod:`.rows`) and rendered by :mod:`.render`."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from ..data import CATEGORIES, CONFLICT
from ..metrics.stats import number, rate_of
from ..metrics.table import Headline, headlines
from .blocks import MISSING, Bullets, Section, Table, fmt_num, fmt_rate, pct
from .changes import PromptRows, old_policies, run_changes
from .collect import RunData, Source, display, eval_costs
from .figures import Figure
from .rate_figures import grouped_bars
from .rows import Row, _rows
from .stage_figures import impact_histograms, loss_curves, loss_series, triage_counts
from .summary import example_blocks, summary_section

TRIAGE_SLICE_NAMES = {"INVERT": "INVERT success", "PUNISH": "PUNISH compliance", "RETAIN": "RETAIN preservation"}
MAX_SLICE_COLUMNS = 8
"""With more slices than this, the per-slice table lists slices as rows and runs as columns."""


def policy_label(data: dict) -> str | None:
    """The policy a result file was made under, as every table names it: ``name (hash)``;
    None when the file does not record it."""
    policy = data.get("policy")
    if isinstance(policy, dict):
        parts = (policy.get("name"), f"({policy['hash']})" if policy.get("hash") else None)
        return " ".join(str(x) for x in parts if x) or None
    return str(policy) if policy else None


def _ordered_union(dicts: Iterable[Any]) -> list[str]:
    out: list[str] = []
    for d in dicts:
        if isinstance(d, dict):
            out.extend(k for k in d if k not in out)
    return out


def _drop_empty_columns(header: list[str], rows: list[list[str]], keep: int = 1) -> tuple[list[str], list[list[str]]]:
    used = [i for i in range(len(header)) if i < keep or any(r[i] != MISSING for r in rows)]
    return [header[i] for i in used], [[r[i] for i in used] for r in rows]


def _cell(headline: Headline, value: Any) -> str:
    """A headline number as the Comparison table shows it."""
    if headline.show == "count":
        return str(value) if isinstance(value, int) else MISSING
    if headline.show == "number":
        return fmt_num(value, headline.decimals)
    return fmt_rate(value, ci=headline.show == "rate_ci")


def _comparison_section(found: RunData, rows: list[Row]) -> Section:
    section = Section("Comparison")
    if not rows:
        section.blocks.append("No metrics.json found: no evaluation numbers to compare.")
        return section
    shown = [h for h in headlines() if h.column is not None]
    header = ["Run", *(h.column for h in shown)]
    table_rows = [[row.label, *(_cell(h, h.read(row.numbers)) for h in shown)] for row in rows]
    header, table_rows = _drop_empty_columns(header, table_rows)
    section.blocks.append(Table(
        "", header, table_rows, [r.baseline for r in rows],
        "Rates in percent. TPA: share of responses the judge finds compliant with the new policy (higher is "
        "better), 95% Wilson interval in parentheses. Slice mean: the mean of the per-slice rates. Balanced "
        "(help/refuse): the mean of the must-help and must-refuse rates (prompts whose expected behaviour under this "
        "policy is a helpful answer, resp. a refusal), where the prompts say so. ASR: attack success "
        "rate, pooled over the jailbreak templates (lower is better): responses the judge finds violating. "
        "Unclassified (attacks): responses it could not classify (an abstention, or no style the rules know, "
        "as a refusal in other words), counted neither as a success nor as resisted."
        + (" Rows marked (before) are the model before re-alignment." if any(r.baseline for r in rows) else ""),
    ))
    return section


def _slice_section(rows: list[Row]) -> tuple[Section, list[str]]:
    section = Section("Policy agreement by slice")
    slices = _ordered_union((r.numbers.get("tpa") or {}).get("by_slice") for r in rows)
    triage_slices = [c for c in CATEGORIES if any(isinstance(r.numbers.get("triage_slices"), dict)
                                                          and c in r.numbers["triage_slices"] for r in rows)]
    if not rows:
        return section, []
    if not slices and not triage_slices:
        section.blocks.append("No per-slice rates in the metrics.")
        return section, []
    columns = [*slices, *(TRIAGE_SLICE_NAMES[c] for c in triage_slices)]

    def values(row: Row) -> list[str]:
        by_slice = (row.numbers.get("tpa") or {}).get("by_slice") or {}
        triaged = row.numbers.get("triage_slices") or {}
        return [fmt_rate(by_slice.get(s)) for s in slices] + [fmt_rate(triaged.get(c)) for c in triage_slices]

    if len(columns) <= MAX_SLICE_COLUMNS:
        section.blocks.append(Table("", ["Run", *columns], [[r.label, *values(r)] for r in rows],
                                    [r.baseline for r in rows]))
    else:
        per_run = [values(r) for r in rows]
        section.blocks.append(Table("", ["Slice", *(r.label for r in rows)],
                                    [[col, *(v[i] for v in per_run)] for i, col in enumerate(columns)]))
    section.blocks.append("Per-slice TPA in percent; INVERT success, PUNISH compliance and RETAIN preservation are "
                          "the agreement rates on prompts taken from the triaged pairs of each category.")
    return section, slices


def _attack_section(rows: list[Row]) -> Section | None:
    templates = _ordered_union(r.numbers.get("attacks") for r in rows)
    if not templates:
        return None
    if "control" in templates:
        templates.remove("control")
        templates.insert(0, "control")
    section = Section("Attack success")
    table_rows = [[r.label, *(fmt_rate((r.numbers.get("attacks") or {}).get(t), ci=True) for t in templates)]
                  for r in rows]
    section.blocks.append(Table("", ["Run", *templates], table_rows, [r.baseline for r in rows],
                                "Share of harmful requests answered in violation of the policy (lower is better), "
                                "95% interval in parentheses; control = the request without a jailbreak wrapper. "
                                "Responses the judge could not classify are no success (Comparison: Unclassified (attacks))."))
    values = [[(r.numbers.get("attacks") or {}).get(t) for t in templates] for r in rows]
    png = grouped_bars("Attack success rate by jailbreak template", [("", templates, values)],
                       [(r.label, r.baseline) for r in rows], "attack success (%)", auto_ylim=True)
    section.blocks.append(Figure("attack_success", "Attack success rate by template",
                                 "Grouped bar chart of attack success rate per jailbreak template and run", png))
    return section


def _responses_section(rows: list[Row], examples: list[Any]) -> Section | None:
    """Style counts per run, then ``examples`` (:func:`.summary.example_blocks`): the responses
    behind the summary's numbers, so a rate can be understood without opening
    ``generations.jsonl``."""
    styled = [r for r in rows if isinstance(r.numbers.get("styles"), dict) and r.numbers["styles"]]
    if not styled and not examples:
        return None
    section = Section("Responses")
    if styled:
        styles = _ordered_union(r.numbers["styles"] for r in styled)
        section.blocks.append(Table("Response styles", ["Run", *styles],
                                    [[r.label, *(str(r.numbers["styles"].get(st, 0)) for st in styles)] for r in styled],
                                    [r.baseline for r in styled],
                                    "Number of policy-prompt responses of each style, as the rules judge classified "
                                    "them (degenerate / unclassified: broken or unrecognised text)."))
    section.blocks.extend(examples)
    return section


def _winrate_section(sources: Sequence[Source]) -> Section:
    section = Section("Win rate")
    rows = []
    for src in sources:
        s = src.data["summary"]
        rate = {"rate": s.get("win_rate"), "ci95": s.get("ci95")}
        position = s.get("position") or {}
        rows.append([src.label, fmt_rate(rate, ci=True), str(s.get("n", MISSING)),
                     f"{s.get('wins', 0)} / {s.get('ties', 0)} / {s.get('losses', 0)}",
                     fmt_rate(s.get("decisive"), ci=True), pct(number(position.get("first_shown_wins"))),
                     policy_label(src.data) or MISSING, str(src.data.get("judge") or MISSING)])
    section.blocks.append(Table("", ["A vs B", "Win rate of A (95% CI)", "n", "W / T / L", "A among decisive",
                                     "First shown wins", "Policy", "Judge"], rows, caption=(
        "Each pair judged in both orders (A first, then B first); an item scores 1 if A wins both, 0.5 if the "
        "orders split or tie, 0 if B wins both. Win rate = mean score with a normal-approximation interval. "
        "First shown wins: the judge's position bias (50% = none).")))
    return section


def _provenance_table(found: RunData) -> Table | None:
    if not found.evals:
        return None
    rows = []
    for src in found.evals:
        d = src.data
        rows.append([src.label, str(d.get("model") or MISSING), str(d.get("adapter") or MISSING),
                     policy_label(d) or MISSING, str(d.get("judge") or MISSING), display(src.path)])
    return Table("Evaluated runs", ["Run", "Model", "Adapter", "Policy", "Judge", "File"], rows)


def _tpa_figure(rows: list[Row], slices: list[str]) -> Figure | None:
    """TPA overall and per slice, and on the prompts of the triaged pairs, as grouped bars."""
    panels = []
    tpa = [r.numbers.get("tpa") or {} for r in rows]
    values = [[m.get("overall"), *((m.get("by_slice") or {}).get(s) for s in slices)] for m in tpa]
    if any(rate_of(v) is not None for vals in values for v in vals):
        panels.append(("prompt slices", ["overall", *slices], values))
    triaged = [c for c in CATEGORIES if any(c in (r.numbers.get("triage_slices") or {}) for r in rows)]
    if triaged:
        values = [[(r.numbers.get("triage_slices") or {}).get(c) for c in triaged] for r in rows]
        panels.append(("prompts from triaged pairs", [TRIAGE_SLICE_NAMES[c] for c in triaged], values))
    if not panels:
        return None
    if len(panels) == 1:
        panels[0] = ("", *panels[0][1:])
    png = grouped_bars("Target policy agreement, before and after", panels,
                       [(r.label, r.baseline) for r in rows], "agreement with the new policy (%)")
    return Figure("tpa_by_slice", "TPA by slice, before and after (95% intervals)",
                  "Grouped bar chart of TPA per slice for the base model and each run", png)


def _impact_section(found: RunData) -> Section:
    impact = Section("Impact weights")
    scored = [s for s in found.score if isinstance(s.data.get("histogram"), dict)]
    if scored:
        impact.blocks.append(Figure("impact_histogram", "Impact-weight histogram per category",
                                    "Histograms of the impact weights of INVERT and PUNISH records",
                                    impact_histograms(scored)))
        header = ["Score run", "Category", "n", "mean", "median", "max", "zero", "share of weight"]
        table_rows = []
        for src in scored:
            for category in CONFLICT:
                st = (src.data.get("weights") or {}).get(category) or {}
                table_rows.append([src.label, category, str(st.get("n", MISSING)), fmt_num(st.get("mean")),
                                   fmt_num(st.get("median")), fmt_num(st.get("max")),
                                   pct(number(st.get("fraction_zero"))), pct(number(st.get("share")))])
        impact.blocks.append(Table("", header, table_rows, caption="Weights after clamping and normalisation; "
                                   "share: the category's part of the total conflict weight."))
    unscored = [s for s in found.score if s not in scored]
    for src in unscored:
        impact.blocks.append(f"{src.label}: no impact weights ({'; '.join(map(str, src.data.get('notes') or [])) or 'no histogram'}).")
    if not found.score:
        impact.blocks.append("No score summary (*.summary.json with stage \"score\") found: impact histogram omitted.")
    return impact


def _triage_section(found: RunData) -> Section:
    triage = Section("Triage")
    counted = [s for s in found.triage if isinstance(s.data.get("counts"), dict)]
    if counted:
        triage.blocks.append(Figure("triage_counts", "Triage counts", "Bar chart of INVERT, PUNISH and RETAIN counts",
                                    triage_counts(counted)))
        rows_t = []
        for src in counted:
            c = src.data["counts"]
            total = sum(int(c.get(k, 0) or 0) for k in CATEGORIES)
            rows_t.append([src.label, *(f"{int(c.get(k, 0) or 0)}" for k in CATEGORIES), str(total),
                           str(src.data.get("dropped", MISSING)), policy_label(src.data) or MISSING,
                           str(src.data.get("judge") or MISSING)])
        triage.blocks.append(Table("", ["Triage run", *CATEGORIES, "Total", "Dropped", "Policy", "Judge"], rows_t))
    else:
        triage.blocks.append("No triage summary (*.summary.json with stage \"triage\") found: triage counts omitted.")
    return triage


def _training_section(found: RunData) -> Section:
    training = Section("Training")
    curves = [(s.label, loss_series(s.data)) for s in found.train]
    with_data = [(label, c) for label, c in curves if c]
    if with_data:
        training.blocks.append(Figure("loss_curves", "Loss components over training steps",
                                      "Line plots of each loss component against the training step", loss_curves(with_data)))
        rows_tr = []
        for s in found.train:
            method = s.data.get("method")
            name = method.get("name") if isinstance(method, dict) else method
            rows_tr.append([s.label, str(name or MISSING), str(s.data.get("steps", MISSING)),
                            fmt_num(s.data.get("train_loss"), 4), fmt_num(s.data.get("wall_s"), 1)])
        training.blocks.append(Table("", ["Train run", "Method", "Steps", "Mean loss", "Wall time (s)"], rows_tr))
    for label, c in curves:
        if not c:
            training.blocks.append(f"{label}: the training summary has no logged loss values.")
    if not found.train:
        training.blocks.append("No train_summary.json found: loss curves omitted.")
    return training


def _sources_section(found: RunData) -> Section:
    provenance = _provenance_table(found)
    files = Section("Sources")
    if provenance is not None:
        files.blocks.append(provenance)
    listed = [f"{s.kind}: {display(s.path)}" for s in found.all]
    files.blocks.append(Bullets(f"Files read ({len(listed)})", listed))
    files.blocks.extend(found.notes)
    return files


def policy_groups(found: RunData) -> list[tuple[str | None, RunData]]:
    """The evaluations by the policy they were judged under (:func:`policy_label`), in order of
    first appearance, each group a RunData of its evaluations only: numbers judged under
    different policies are never put side by side. One group (label None) when there are none."""
    groups: dict[str | None, list[Source]] = {}
    for src in found.evals:
        groups.setdefault(policy_label(src.data), []).append(src)
    return [(policy, RunData(evals=evals)) for policy, evals in groups.items()] or [(None, found)]


def _name_policy(sections: list[Section], policy: str | None, group: int | None) -> None:
    """Name the policy above the evaluation tables (the untitled ones: those of the runs'
    numbers); with several policies (``group``: this one's number), in the section titles too,
    and number the figures apart."""
    label = policy or "not recorded"
    for section in sections:
        if group is not None:
            section.title += f" · policy {label}"
        for block in section.blocks:
            if isinstance(block, Table) and not block.title:
                block.title = f"Policy: {label}"
            elif isinstance(block, Figure) and group is not None:
                block.name += f"_{group}"


def build_sections(found: RunData, old: dict | None = None) -> list[Section]:
    """The report, section by section: summary, comparison, TPA by slice, attacks and responses
    (once per policy the evaluations were judged under: :func:`policy_groups`), win rates,
    impact weights, triage, training, sources (a piece no run has is a one-line note or left
    out). ``old``: each run folder's old policy (default: :func:`.changes.old_policies`)."""
    groups = policy_groups(found)
    old, prompt_rows = old_policies(found, None) if old is None else old, PromptRows()
    costs = eval_costs(found)
    sections = []
    for number, (policy, evals) in enumerate(groups, 1):
        part = _evaluation_sections(evals, old, prompt_rows, costs)
        _name_policy(part, policy, number if len(groups) > 1 else None)
        sections += part
    if found.winrate:
        sections.append(_winrate_section(found.winrate))
    sections += [_impact_section(found), _triage_section(found), _training_section(found), _sources_section(found)]
    return sections


def _evaluation_sections(found: RunData, old: dict, prompt_rows, costs: dict) -> list[Section]:
    """Summary, comparison, TPA by slice, attacks and responses of ``found``'s evaluations
    (``old``, ``prompt_rows``: what :func:`.changes.run_changes` reads; ``costs``: what the
    runs spent, :func:`.collect.eval_costs`)."""
    rows = _rows(found)
    changes = run_changes(rows, old, prompt_rows)
    sections = [summary_section(changes, costs)] if changes else []
    sections.append(_comparison_section(found, rows))

    slice_section, slices = _slice_section(rows)
    if rows:
        figure = _tpa_figure(rows, slices)
        if figure is not None:
            slice_section.blocks.append(figure)
        if not any(r.baseline for r in rows):
            slice_section.blocks.append("No base-model (before) evaluation among these runs: only the runs are shown "
                                        "(evaluate the base model too, or use realign eval --baseline).")
    sections.append(slice_section)

    attacks = _attack_section(rows)
    if attacks is not None:
        sections.append(attacks)
    elif rows:
        sections.append(Section("Attack success", ["No attack results in the metrics."]))

    responses = _responses_section(rows, example_blocks(changes))
    if responses is not None:
        sections.append(responses)
    return sections
