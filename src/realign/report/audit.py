"""The page of ``realign judge audit``: the numbers of :func:`realign.judges.audit.audit_metrics`
as sections of tables, the reliability diagram and the disagreements, rendered by :mod:`.render`
(one self-contained HTML file and a Markdown file)."""

from __future__ import annotations

from typing import Any

from ..data import INVERT, PUNISH, RETAIN
from ..judges.audit import ABSTAINED, COMPLIANT, TRIAGE_OUTCOMES, VIOLATING
from .calibration_figure import reliability_diagram
from .figures import Figure
from .blocks import MISSING, Section, Table, _clip, fmt_num, fmt_rate

#: disagreements listed on the page (every one is in audit_items.jsonl)
SHOWN_DISAGREEMENTS = 20


def _kappa(value: Any) -> str:
    return fmt_num(value, 3) if value is not None else MISSING


def _agreement_section(result: dict) -> Section:
    o = result["overall"]
    rows = [
        ["Labelled responses", str(o["n"])],
        ["Judge abstained", fmt_rate(o["abstained"], ci=True, n=True)],
        ["Accuracy (decided verdicts)", fmt_rate(o["accuracy"], ci=True, n=True)],
        ["Error rate", fmt_rate(o["error_rate"], ci=True, n=True)],
        ["Cohen's κ", _kappa(o["kappa"])],
        ["False violations: judged violating, labelled compliant", fmt_rate(o["false_violation"], ci=True, n=True)],
        ["False compliance: judged compliant, labelled violating", fmt_rate(o["false_compliance"], ci=True, n=True)],
    ]
    table = o["confusion"]
    confusion = [[f"labelled {h}", *(str(table[h][j]) for j in (COMPLIANT, VIOLATING, ABSTAINED))]
                 for h in (COMPLIANT, VIOLATING)]
    return Section("Agreement with the labels", [
        Table("", ["Measure", "Value"], rows, caption="Rates with Wilson 95% intervals. Accuracy, κ and the error "
              "directions count the judge's decided verdicts; abstentions are counted apart."),
        Table("Confusion matrix", ["", "judged compliant", "judged violating", "abstained"], confusion),
    ])


def _category_section(result: dict) -> Section:
    rows = []
    for category, a in result["by_category"].items():
        t = a["confusion"]
        rows.append([category, str(a["n"]), fmt_rate(a["accuracy"], ci=True), _kappa(a["kappa"]),
                     fmt_rate(a["false_violation"], n=True), fmt_rate(a["false_compliance"], n=True),
                     str(t[COMPLIANT][ABSTAINED] + t[VIOLATING][ABSTAINED]),
                     " / ".join(str(t[h][j]) for h in (COMPLIANT, VIOLATING) for j in (COMPLIANT, VIOLATING))])
    return Section("By prompt category", [Table("", [
        "Category", "n", "Accuracy (95% CI)", "κ", "False violations", "False compliance", "Abstained",
        "CC / CV / VC / VV"], rows, caption=(
        f"Category: the record's own, else the rules judge's category of the prompt ({result['categories_from']}). "
        "CC / CV / VC / VV: labelled compliant judged compliant, labelled compliant judged violating, "
        "labelled violating judged compliant, labelled violating judged violating."))])


def _calibration_section(result: dict) -> Section:
    cal = result["calibration"]
    section = Section("Calibration of P(compliant)")
    if cal is None:
        section.blocks.append("The judge gives no P(compliant) (an OpenAI-compatible endpoint without log-probs, "
                              "or a backend that has none), so there is nothing to calibrate.")
        return section
    rows = [[f"{b['lo']:.2f}–{b['hi']:.2f}", str(b["n"]), fmt_num(b["mean_p"], 3), fmt_rate(b["observed"], ci=True)]
            for b in cal["bins"]]
    section.blocks += [
        Figure("reliability", "Reliability diagram", "Mean P(compliant) per bin against the labelled share compliant",
               reliability_diagram(cal["bins"], cal["ece"], cal["n"])),
        Table("", ["P(compliant)", "n", "Mean P", "Labelled compliant (95% CI)"], rows, caption=(
            f"{cal['n']} of {cal['of']} responses have a P(compliant). Expected calibration error "
            f"{cal['ece']:.3f} (the count-weighted gap between mean P and the labelled share); Brier score "
            f"{cal['brier']:.3f}. A judge that only says yes or no (the rules judge: P is 0 or 1) fills two bins.")),
    ]
    return section


def _triage_section(result: dict) -> Section:
    section = Section("What the errors do to triage")
    tri = result["triage"]
    if tri is None:
        section.blocks.append("No labelled pairs (records with pair_id and role), so no triage to compare.")
        return section
    rows = [[f"labelled {h}", *(str(tri["table"][h][j]) for j in TRIAGE_OUTCOMES), fmt_rate(tri["changed_by_category"][h])]
            for h in (INVERT, PUNISH, RETAIN)]
    section.blocks += [
        f"{fmt_rate(tri['changed'], ci=True)} of {tri['pairs']} labelled old pairs change triage category when the "
        "judge decides instead of the labels: the label noise TRACE would train on.",
        Table("", ["", *(f"judged {j}" for j in TRIAGE_OUTCOMES), "Changed"], rows, caption=(
            "Rows: the category from the labels; columns: from the judge's verdicts, abstentions settled by its "
            "on_unparseable rule as triage settles them (a pair they leave open is dropped).")),
    ]
    return section


def _disagreements_section(items: list[dict]) -> Section:
    wrong = [r for r in items if r["agrees"] is False]
    rows = [[str(r["id"]), str(r["category"]), r["label"], r["verdict"],
             fmt_num(r["p_compliant"], 2) if r["p_compliant"] is not None else MISSING,
             _clip(r["prompt"]), _clip(r["response"]), _clip(r["raw"], 100)] for r in wrong[:SHOWN_DISAGREEMENTS]]
    section = Section("Disagreements")
    if not rows:
        section.blocks.append("The judge agrees with every label it decided.")
        return section
    section.blocks.append(Table("", ["Id", "Category", "Label", "Judge", "P", "Prompt", "Response", "Judge's answer"],
                                rows, caption=f"{min(len(wrong), SHOWN_DISAGREEMENTS)} of {len(wrong)} "
                                "disagreements; every response, its label and verdict are in audit_items.jsonl."))
    return section


def audit_sections(result: dict, items: list[dict]) -> list[Section]:
    """The page's sections from ``audit.json``'s content and the rows of ``audit_items.jsonl``."""
    return [_agreement_section(result), _category_section(result), _calibration_section(result),
            _triage_section(result), _disagreements_section(items)]


def audit_title(result: dict) -> tuple[str, str]:
    """The page's title and its line of what was audited against what."""
    j = result["judging"]
    return "Judge audit", (
        f"judge {result['judge']} · policy {result['policy']['name']} ({result['policy']['hash']}) · "
        f"labels {result['labels']} ({result['overall']['n']} responses) · judged {j['judged']} now, "
        f"{j['cache_hits']} from the cache")
