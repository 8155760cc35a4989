"""The report as one self-contained HTML page or a Markdown file with its figures beside it,
and :func:`build_report`, the entry point of ``realign report``."""

from __future__ import annotations

import base64
import datetime as _dt
import html
from pathlib import Path
from typing import Collection, Sequence

from ..errors import RealignError
from ..runs.files import atomic_open, check_output_paths, write_text
from .changes import load_old_policy, old_policies
from .collect import METRICS_NAME, SEARCH_DEPTH, SUMMARY_SUFFIX, TRAIN_NAME, RunData, collect, run_name
from .figures import Figure
from .blocks import MISSING, Bullets, Details, Lead, Section, Table
from .sections import build_sections, policy_groups


_CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #f6f7f9; color: #1d232b;
  font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "DejaVu Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 48px; }
header { border-bottom: 2px solid #d9dde3; margin-bottom: 8px; padding-bottom: 10px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #e1e4e8; }
.meta { color: #5b6470; font-size: 13px; margin: 0; }
.table-wrap { overflow-x: auto; margin: 8px 0 6px; }
table { border-collapse: collapse; background: #fff; font-size: 14px; min-width: 40%;
  box-shadow: 0 1px 2px rgba(0,0,0,.06); }
th, td { padding: 6px 12px; border-bottom: 1px solid #e6e8eb; white-space: nowrap; }
th { background: #eef1f5; text-align: left; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) td { background: #fafbfc; }
tr.muted td { color: #6b7480; font-style: italic; }
.caption, .note { color: #5b6470; font-size: 13px; margin: 4px 0 12px; max-width: 75em; }
.note { border-left: 3px solid #c9d1db; padding-left: 10px; }
figure { margin: 14px 0 22px; background: #fff; padding: 10px; border: 1px solid #e3e6ea; border-radius: 6px;
  display: inline-block; max-width: calc(100% - 22px); }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: #5b6470; font-size: 13px; margin-top: 6px; }
details { margin: 8px 0; font-size: 13px; color: #3b434d; }
summary { cursor: pointer; font-weight: 600; }
details ul { margin: 6px 0 0; padding-left: 22px; }
details.examples { font-size: 14px; color: inherit; background: #fff; border: 1px solid #e3e6ea; border-radius: 6px;
  padding: 6px 12px; }
details.examples h3 { font-size: 13px; font-weight: 600; margin: 12px 0 2px; white-space: normal; }
details.examples td { white-space: normal; max-width: 34em; }
p.lead { font-size: 15px; margin: 6px 0 10px; max-width: 75em; }
code { font: 12px/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; }
footer { margin-top: 36px; color: #8a929c; font-size: 12px; }
"""


def _is_numeric_cell(text: str) -> bool:
    t = text.strip()
    return bool(t) and (t == MISSING or t[0].isdigit() or (t[0] in "-+" and t[1:2].isdigit()))


def _html_table(table: Table) -> str:
    numeric = [all(_is_numeric_cell(r[i]) for r in table.rows) and i > 0 for i in range(len(table.header))]
    parts = ['<div class="table-wrap"><table>']
    parts.append("<thead><tr>" + "".join(
        f'<th class="num">{html.escape(h)}</th>' if numeric[i] else f"<th>{html.escape(h)}</th>"
        for i, h in enumerate(table.header)) + "</tr></thead><tbody>")
    for k, row in enumerate(table.rows):
        muted = k < len(table.muted) and table.muted[k]
        cells = "".join(f'<td class="num">{html.escape(c)}</td>' if numeric[i] else f"<td>{html.escape(c)}</td>"
                        for i, c in enumerate(row))
        parts.append(f'<tr class="muted">{cells}</tr>' if muted else f"<tr>{cells}</tr>")
    parts.append("</tbody></table></div>")
    if table.caption:
        parts.append(f'<p class="caption">{html.escape(table.caption)}</p>')
    return "".join(parts)


def _title_block(found: RunData, old: dict) -> tuple[str, str]:
    """The title and the line under it: the run folders, the policy (or policies) the
    evaluations were judged under, the old policy they are compared with (``old``: by run
    folder), the judge (its identity and a hosted judge's endpoint: no credentials), the time."""
    runs = sorted({run_name(s.run) for s in found.all})
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    policies = [policy or "not recorded" for policy, _ in policy_groups(found)] if found.evals else []
    judged = (f" · policy {policies[0]}" if len(policies) == 1 else
              f" · {len(policies)} policies, reported apart: {'; '.join(policies)}" if policies else "")
    olds = sorted({p.label for p in old.values() if p is not None})
    judged += f" · old policy {'; '.join(olds)}" if olds else ""
    judges = sorted({f"{s.data['judge']} at {s.data['judge_endpoint']}" if s.data.get("judge_endpoint")
                     else str(s.data["judge"]) for s in (*found.evals, *found.triage) if s.data.get("judge")})
    return "Re-alignment report", (f"{len(runs)} run folder{'s' if len(runs) != 1 else ''}: {', '.join(runs)}{judged}"
                                   + (f" · judge: {', '.join(judges)}" if judges else "") + f" · generated {created}")


def _html_block(block) -> str:
    """One block of a section as HTML (a :class:`Details` with its blocks inside)."""
    if isinstance(block, Table):
        return (f"<h3>{html.escape(block.title)}</h3>" if block.title else "") + _html_table(block)
    if isinstance(block, Bullets):
        items = "".join(f"<li><code>{html.escape(item)}</code></li>" for item in block.items)
        return f"<details><summary>{html.escape(block.title)}</summary><ul>{items}</ul></details>"
    if isinstance(block, Details):
        inner = "".join(_html_block(b) for b in block.blocks)
        return f'<details class="examples"><summary>{html.escape(block.title)}</summary>{inner}</details>'
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode("ascii")
        return (f'<figure><img alt="{html.escape(block.alt)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(block.title)}</figcaption></figure>")
    if isinstance(block, Lead):
        return f'<p class="lead">{html.escape(block.text)}</p>'
    return f'<p class="note">{html.escape(str(block))}</p>'


def render_html(sections: list[Section], title: str, meta: str, command: str = "realign report") -> str:
    """One self-contained HTML page: ``title``, a ``meta`` line, the sections, figures inline;
    the footer names the ``command`` that wrote it."""
    body = [f"<header><h1>{html.escape(title)}</h1><p class=\"meta\">{html.escape(meta)}</p></header>"]
    for section in sections:
        body.append(f"<section><h2>{html.escape(section.title)}</h2>")
        body += [_html_block(block) for block in section.blocks]
        body.append("</section>")
    body.append(f"<footer>Written by {html.escape(command)} (trace-realign).</footer>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


# --------------------------------------------------------------------------- Markdown


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]|#"} | {"<": "&lt;", ">": "&gt;", "&": "&amp;", "\n": " "})


def _md_text(text: str) -> str:
    """Text from result files (labels, slice names, responses) as inert Markdown: no HTML, no
    emphasis, links or table breaks."""
    return str(text).translate(_MD_SPECIAL)


def _md_cell(text: str) -> str:
    return _md_text(text)


def _md_table(table: Table) -> str:
    numeric = [all(_is_numeric_cell(r[i]) for r in table.rows) and i > 0 for i in range(len(table.header))]
    lines = []
    if table.title:
        lines += [f"### {_md_text(table.title)}", ""]
    lines.append("| " + " | ".join(_md_cell(h) for h in table.header) + " |")
    lines.append("|" + "|".join("---:" if numeric[i] else ":---" for i in range(len(table.header))) + "|")
    for k, row in enumerate(table.rows):
        muted = k < len(table.muted) and table.muted[k]
        cells = [_md_cell(c) for c in row]
        if muted:
            cells[0] = f"*{cells[0]}*"
        lines.append("| " + " | ".join(cells) + " |")
    if table.caption:
        lines += ["", f"_{_md_cell(table.caption)}_"]
    return "\n".join(lines)


def _md_block(block, folder: Path, images: dict[Path, bytes]) -> list[str]:
    """One block of a section as Markdown lines; a figure's PNG goes into ``images``. A
    :class:`Details` folds with HTML's ``<details>``, which Markdown viewers such as GitHub's show."""
    if isinstance(block, Table):
        return [_md_table(block), ""]
    if isinstance(block, Bullets):
        return [f"**{_md_text(block.title)}**", "", *(f"- `{str(item).replace('`', chr(39))}`" for item in block.items), ""]
    if isinstance(block, Details):
        inner = [line for b in block.blocks for line in _md_block(b, folder, images)]
        return [f"<details><summary>{html.escape(block.title)}</summary>", "", *inner, "</details>", ""]
    if isinstance(block, Figure):
        rel = folder / f"{block.name}.png"
        images[rel] = block.png
        return [f"![{block.alt}]({rel.as_posix()})", "", f"*{block.title}*", ""]
    if isinstance(block, Lead):
        return [_md_text(block.text), ""]
    return [f"> {_md_text(block)}", ""]


def render_markdown(sections: list[Section], title: str, meta: str, out: Path) -> tuple[str, dict[Path, bytes]]:
    """The Markdown text of a page to be written at ``out``, and its figures by their path
    relative to ``out``'s folder (``<stem>_files/NAME.png``)."""
    folder = Path(f"{out.stem}_files")
    images: dict[Path, bytes] = {}
    lines = [f"# {title}", "", meta, ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            lines += _md_block(block, folder, images)
    return "\n".join(lines).rstrip() + "\n", images


# --------------------------------------------------------------------------- entry point


def build_report(run_dirs: Sequence[str | Path], out: str | Path, only: Collection[str | Path] | None = None,
                 old_policy: str | Path | None = None) -> Path:
    """Write a report of ``run_dirs`` to ``out``: ``.html`` (one self-contained file) or
    ``.md`` (with the figures as PNG files in ``<stem>_files/`` beside it). ``only``: the
    result files to report, others found being left out with a note (:func:`.collect.collect`).
    ``old_policy``: the policy the runs' model was aligned to (a file or a packaged policy's
    name; default: each run's ``run_config.yaml`` ``old_policy``), which says which slices the
    new policy changed (:mod:`.changes`). Returns ``out``."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".html", ".htm", ".md", ".markdown"):
        raise RealignError(f"{out}: the report must end in .html or .md")
    given = load_old_policy(old_policy, "--old-policy") if old_policy is not None else None
    found = collect(run_dirs, only)
    if found.empty:
        where = ", ".join(str(p) for p in run_dirs)
        detail = f" ({'; '.join(found.notes)})" if found.notes else ""
        raise RealignError(
            f"nothing to report in {where}: no {METRICS_NAME}, *{SUMMARY_SUFFIX} (stage triage or score) or "
            f"{TRAIN_NAME} within {SEARCH_DEPTH} levels{detail}"
        )
    figures = out.parent / f"{out.stem}_files" if suffix in (".md", ".markdown") else None
    check_output_paths({f"input {i} of {len(found.all)}": s.path for i, s in enumerate(found.all, 1)},
                       {"--out": out}, {"the figures folder beside --out": figures})
    old = old_policies(found, given)
    sections = build_sections(found, old)
    if suffix in (".html", ".htm"):
        write_text(out, render_html(sections, *_title_block(found, old)))
    else:
        write_markdown(out, sections, *_title_block(found, old))
    return out


def write_markdown(out: Path, sections: list[Section], title: str, meta: str) -> None:
    """:func:`render_markdown` written to ``out``, its figures first (each file atomically)."""
    text, images = render_markdown(sections, title, meta, out)
    for rel, png in images.items():
        with atomic_open(out.parent / rel, "wb") as fh:
            fh.write(png)
    write_text(out, text)
