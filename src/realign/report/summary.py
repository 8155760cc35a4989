"""The report's answers to the two questions it is opened with — did the slices the policy
changed move, and did anything else break? — per run against its before
(:mod:`.changes`): a sentence each, a run × {changed, unchanged, regressions, cost} table with
what each run spent (:func:`.collect.eval_costs`), the changed slices (or, where which changed
is unknown, the slices that moved most), the regressions, a picture (heat maps or a forest
plot), and the responses behind them."""

from __future__ import annotations

from typing import Any

from ..metrics.stats import difference, number, rate_of
from ..metrics.table import pooled
from .blocks import EXAMPLE_CHARS, MISSING, Details, Lead, Section, Table, _clip, fmt_num, fmt_rate, pct
from .changes import RunChange, SliceChange
from ..metrics.costs import COSTS
from .change_figures import REGRESSION_MARK, change_forest, change_heat_maps, grid_of
from .figures import Figure
from .rows import Row, _generations, _verdict_text

RANKED_SLICES = 10
"""Where which slices changed is unknown: the summary lists the slices that moved most, so many."""
GLANCE_REGRESSIONS = 3
"""Regressions named in a cell of the at-a-glance table (all are in the regressions table)."""
EXAMPLES_PER_SLICE = 2
MAX_EXAMPLE_SLICES = 12
"""Examples: responses per slice, and slices shown per run and kind (flips, regressions)."""
REASON_CHARS = 120
RULE = ("A regression is a slice whose change (after - before) has a 95% interval wholly below zero "
        "(Newcombe's hybrid score interval, from the two Wilson intervals).")


def _ci(value: Any) -> str:
    return fmt_rate(value, ci=True)


def _move(before: Any, after: Any) -> str:
    """"0.0% → 78.1%"; one side missing shows as —."""
    if rate_of(before) is None and rate_of(after) is None:
        return MISSING
    return f"{pct(rate_of(before))} → {pct(rate_of(after))}"


def _change(diff: tuple[float, float, float] | None) -> str:
    """A change in percentage points with its interval: "+78.1 (+61.2 to +89.0)"."""
    if diff is None:
        return MISSING
    d, lo, hi = (100 * x for x in diff)
    return f"{d:+.1f} ({lo:+.1f} to {hi:+.1f})"


def _cost_numbers(change: RunChange) -> list[tuple[str, Any, Any]]:
    """(name, before, after) of the cost: benign accuracy, degenerate, KL, attack success and
    unclassified attack responses (pooled over the jailbreak templates)."""
    before = change.before.numbers if change.before else {}
    after = change.row.numbers

    def utility(m: dict, key: str) -> Any:
        return (m.get("utility") or {}).get(key) if isinstance(m.get("utility"), dict) else None

    return [("benign accuracy", utility(before, "benign_accuracy"), utility(after, "benign_accuracy")),
            ("degenerate", before.get("degenerate_rate"), after.get("degenerate_rate")),
            ("KL to the reference", None, utility(after, "kl_to_reference")),
            ("attack success", pooled(before.get("attacks")), pooled(after.get("attacks"))),
            ("unclassified attack responses", pooled(before.get("attacks_unclassified")),
             pooled(after.get("attacks_unclassified")))]


def _cost_sentence(change: RunChange) -> str:
    parts = []
    for name, before, after in _cost_numbers(change):
        if name.startswith("KL"):
            if number(after) is not None:
                parts.append(f"{name} {fmt_num(after, 4)}")
        elif rate_of(after) is not None:
            parts.append(f"{name} {_move(before, after) if rate_of(before) is not None else pct(rate_of(after))}")
    return f" Cost: {', '.join(parts)}." if parts else ""


def _slice_move(s: SliceChange) -> str:
    return f"{s.name} ({_move(s.before, s.after)})"


def sentence(change: RunChange) -> str:
    """One run's answers in a sentence: the changed slices' move, the unchanged ones', the
    regressions (or none) and the largest drop within its interval, the cost."""
    label = change.row.label
    if change.before is None:
        return (f"{label}: no before evaluation to compare with (evaluate the base model too, or use realign eval "
                "--baseline).")
    known = change.changed.slices
    if known is None:
        text = (f"{label}: which slices the policy changed is unknown, {change.changed.how}; the slices are ranked by "
                "change.")
    elif not known:
        text = f"{label}: the eval prompts expect the same behaviour under both policies on every slice: none changed."
    else:
        (b, a), (ub, ua) = change.pooled(True), change.pooled(False)
        count = sum(s.changed is True for s in change.slices)
        text = (f"{label}: on the {count} slice{'s' if count != 1 else ''} the policy changed, agreement went from "
                f"{_ci(b)} to {_ci(a)}")
        kept = sum(s.changed is False for s in change.slices)
        text += f"; on the {kept} it left unchanged, from {_ci(ub)} to {_ci(ua)}." if kept else "."
    worse, drop = change.regressions, change.largest_drop()
    text += f" Regressions ({len(worse)}): {', '.join(_slice_move(s) for s in worse)}" if worse else " Regressions: none"
    if drop is not None:
        text += f"; the largest {'other ' if worse else ''}drop, within its interval: {_slice_move(drop)}"
    return text + "." + _cost_sentence(change)


def _regressions_cell(change: RunChange) -> str:
    worse = change.regressions
    if change.before is None:
        return MISSING
    if not worse:
        return "none"
    names = ", ".join(s.name for s in worse[:GLANCE_REGRESSIONS]) + (", …" if len(worse) > GLANCE_REGRESSIONS else "")
    return f"{len(worse)}: {names}"


SPENT_HEADER = ["Judge calls", "Generated tokens", "Training tokens", "Train wall (s)"]
SPENT_CAPTION = (
    " What each run spent (its train_summary.json's budget; — where unknown, as in a summary written before budgets "
    "were): judge calls = "
    "responses judged, cache hits included, so a rerun counts what the first run did — for a method trained on the "
    "triage, the triage's judgements of the old pairs plus the candidates its corrective search judged (where the "
    "triage summary is among the files read); for self-distill and online-dpo, their own samples judged; generated "
    "tokens = sampled from the model (the corrective search's, resp. the method's own samples); training tokens = "
    "non-padding tokens in training forward passes; train wall = the train stage (training, plus self-distill's "
    "sampling and judging), the triage and Stage 2 scoring not included.")


def _spent(cost: dict | None) -> list[str]:
    """A run's cost cells (:data:`realign.metrics.costs.COSTS`): counts in full, wall time to a tenth of a second."""
    values = [(cost or {}).get(name) for name in COSTS]
    return [MISSING if v is None else f"{v:,.{1 if name == 'wall_s' else 0}f}" for name, v in zip(COSTS, values)]


def glance_table(changes: list[RunChange], costs: dict) -> Table:
    """Run × {changed slices, unchanged slices, regressions, cost}, before → after; then what
    each run spent (``costs``: :func:`.collect.eval_costs`), where any run's training is known."""
    rows = []
    for change in changes:
        cost = {name: (b, a) for name, b, a in _cost_numbers(change)}
        unknown = change.changed.slices is None
        rows.append([change.row.label, "unknown" if unknown else _move(*change.pooled(True)),
                     MISSING if unknown else _move(*change.pooled(False)), _regressions_cell(change),
                     _move(*cost["benign accuracy"]), _move(*cost["degenerate"]),
                     fmt_num(cost["KL to the reference"][1], 4), _move(*cost["attack success"]),
                     _move(*cost["unclassified attack responses"])])
    header = ["Run", "Changed slices", "Unchanged slices", "Regressions", "Benign acc.", "Degenerate", "KL to ref.",
              "ASR (attacks pooled)", "Unclassified (attacks)"]
    used = [i for i in range(len(header)) if i < 4 or any(r[i] != MISSING for r in rows)]
    header, rows = [header[i] for i in used], [[r[i] for i in used] for r in rows]
    spent = any(change.row.source.path in costs for change in changes)
    if spent:
        header += SPENT_HEADER
        rows = [[*r, *_spent(costs.get(change.row.source.path))] for r, change in zip(rows, changes)]
    return Table("", header, rows, caption=(
        "Before → after, in percent: agreement with the new policy pooled over the slices the policy changed and over "
        "those it left unchanged (which changed: the eval prompts' expected behaviour under the old and the new "
        "policy), the regressions, and the cost. " + RULE + " ASR: attack success, violations only; unclassified "
        "attack responses apart." + (SPENT_CAPTION if spent else "")))


def _slice_rows(change: RunChange, slices: list[SliceChange], many: bool) -> list[list[str]]:
    lead = [change.row.label] if many else []
    return [[*lead, s.name, _ci(s.before), _ci(s.after), _change(s.diff)] for s in slices]


def slices_table(changes: list[RunChange]) -> Table | None:
    """The slices the policy changed, before and after with their intervals (the pooled row
    first); where that is unknown, the slices that moved most."""
    many = len(changes) > 1
    rows: list[list[str]] = []
    unknown = False
    for change in changes:
        if change.before is None:
            continue
        if change.changed.slices is None:
            unknown = True
            moved = sorted((s for s in change.slices if s.diff is not None), key=lambda s: -abs(s.diff[0]))
            rows += _slice_rows(change, moved[:RANKED_SLICES], many)
            continue
        b, a = change.pooled(True)
        if b is not None or a is not None:
            pooled_row = SliceChange("all changed slices (pooled)", b, a, difference(b, a), True)
            rows += _slice_rows(change, [pooled_row, *(s for s in change.ranked() if s.changed)], many)
    if not rows:
        return None
    title = "Slices that moved most" if unknown and not any(c.changed.slices for c in changes) else "Slices the policy changed"
    caption = ("Agreement with the new policy in percent, 95% Wilson intervals in parentheses; change in percentage "
               "points with its 95% interval (Newcombe).")
    if unknown:
        caption += (f" Where which slices the policy changed is unknown, the {RANKED_SLICES} slices whose agreement "
                    "moved most are listed instead, largest change first.")
    return Table(title, [*(["Run"] if many else []), "Slice", "Before (95% CI)", "After (95% CI)", "Change, points (95% CI)"],
                 rows, caption=caption)


def regressions_block(changes: list[RunChange]) -> Table | str:
    """Every regression of every run, largest drop first; a note when there is none."""
    many = len(changes) > 1
    rows = []
    for change in changes:
        for s in change.regressions:
            changed = {True: "yes", False: "no", None: "unknown"}[s.changed]
            rows.append([*([change.row.label] if many else []), s.name, changed, _ci(s.before), _ci(s.after), _change(s.diff)])
    if not rows:
        return "Regressions: none. " + RULE
    return Table("Regressions", [*(["Run"] if many else []), "Slice", "Changed by the policy", "Before (95% CI)",
                                 "After (95% CI)", "Change, points (95% CI)"], rows, caption=RULE)


def summary_figures(changes: list[RunChange]) -> list[Figure]:
    """Heat maps (category × context: before, after, difference) per run when every slice is
    named ``category/context``, else one forest plot of the changes."""
    compared = [c for c in changes if c.before is not None and any(s.diff is not None for s in c.slices)]
    if not compared:
        return []
    if all(grid_of([s.name for s in c.slices]) is not None for c in compared):
        return [Figure(f"change_heat_map_{i}", f"{c.row.label}: agreement by category and context, before, after and "
                       f"the change, in percent and points. Framed: the slices the policy changed; dashed frame and "
                       f"{REGRESSION_MARK}: regressions; –: no prompts.", f"Heat maps of agreement per category and context for {c.before.label} and "
                       f"{c.row.label}, and their difference", change_heat_maps(c))
                for i, c in enumerate(compared, 1)]
    return [Figure("change_forest", f"Change in agreement per slice (after - before, points), largest gain first, with "
                   f"95% intervals; squares: the slices the policy changed; {REGRESSION_MARK}: regressions.",
                   "Forest plot of each slice's change in agreement, with changed slices and regressions marked",
                   change_forest(compared))]


def summary_section(changes: list[RunChange], costs: dict) -> Section:
    """The page's first section: a sentence per run, the at-a-glance table (with what each run
    spent: ``costs``), the changed slices, the regressions and the picture."""
    section = Section("Summary", [Lead(sentence(c)) for c in changes])
    section.blocks.append(glance_table(changes, costs))
    table = slices_table(changes)
    if table is not None:
        section.blocks.append(table)
    section.blocks.append(regressions_block(changes))
    section.blocks += summary_figures(changes)
    return section


# --------------------------------------------------------------------------- examples


def _records(row: Row | None) -> dict[str, dict]:
    return {} if row is None else {str(rec.get("id")): rec for rec in _generations(row)}


def _example(slice_name: str, before_row: Row, row: Row, before: dict, after: dict) -> Table:
    reason = lambda rec: _clip(rec.get("raw") or MISSING, REASON_CHARS)  # noqa: E731
    return Table(f"{slice_name}: {_clip(after.get('prompt'))}", ["Run", "Response", "Verdict", "Judge's reason"],
                 [[before_row.label, _clip(before.get("response")), _verdict_text(before), reason(before)],
                  [row.label, _clip(after.get("response")), _verdict_text(after), reason(after)]], [True, False])


def _examples(change: RunChange, slices: list[str], flipped) -> tuple[list[Table], int]:
    """Up to :data:`EXAMPLES_PER_SLICE` pairs of responses per slice whose verdicts ``flipped``
    (before record, after record) says; and how many such pairs there are in all."""
    before, after = _records(change.before), _records(change.row)
    tables, total = [], 0
    for name in slices[:MAX_EXAMPLE_SLICES]:
        pairs = [(before[i], rec) for i, rec in after.items()
                 if str(rec.get("slice") or "all") == name and i in before and flipped(before[i], rec)]
        total += len(pairs)
        tables += [_example(name, change.before, change.row, b, a) for b, a in pairs[:EXAMPLES_PER_SLICE]]
    return tables, total


def example_blocks(changes: list[RunChange]) -> list[Any]:
    """Per run, folded: the responses that flipped to compliant on the slices the policy
    changed (where unknown, on the slices that gained most), and every regression's responses
    that flipped away from compliant, a few per slice, before and after, with the judge's verdict
    and its reason (its raw answer)."""
    blocks: list[Any] = []
    for change in changes:
        if change.before is None:
            continue
        known = change.changed.slices
        gained = [s.name for s in change.ranked() if (s.changed if known is not None else s.diff and s.diff[0] > 0)]
        where = "the slices the policy changed" if known is not None else "the slices that gained most"
        tables, total = _examples(change, gained, lambda b, a: b.get("compliant") is not True and a.get("compliant") is True)
        if tables:
            blocks.append(Details(f"{change.row.label}: responses that flipped to compliant on {where} "
                                  f"({len(tables)} of {total} shown)", tables))
        worse = [s.name for s in change.regressions]
        tables, total = _examples(change, worse, lambda b, a: b.get("compliant") is True and a.get("compliant") is not True)
        if tables:
            blocks.append(Details(f"{change.row.label}: responses behind the regressions, compliant before and not after "
                                  f"({len(tables)} of {total} shown)", tables))
    if blocks:
        blocks.append(f"At most {EXAMPLES_PER_SLICE} examples per slice, responses cut at {EXAMPLE_CHARS} characters and the judge's "
                      f"reason (its raw answer) at {REASON_CHARS}; every response is in each run's generations.jsonl.")
    return blocks
