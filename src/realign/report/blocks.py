"""The blocks a report page is made of — sections of tables, notes, lead sentences and folded
details — and how numbers are shown in them; rendered by :mod:`.render`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..metrics.stats import ci_of, number, rate_of

EXAMPLE_CHARS = 160
"""The report's example responses are cut at so many characters."""
MISSING = "—"


def pct(value: float | None) -> str:
    """0.725 -> "72.5%"; None -> "—"."""
    return MISSING if value is None else f"{100 * value:.1f}%"


def fmt_rate(value: Any, *, ci: bool = False, n: bool = False) -> str:
    r = rate_of(value)
    if r is None:
        return MISSING
    text = pct(r)
    interval = ci_of(value)
    if ci and interval is not None:
        text += f" ({100 * interval[0]:.1f}–{100 * interval[1]:.1f})"
    if n and isinstance(value, dict) and isinstance(value.get("n"), int):
        text += f" · n={value['n']}"
    return text


def fmt_num(value: Any, decimals: int = 3) -> str:
    """A number with fixed decimals (scientific notation when it would show as zero or is huge)."""
    v = number(value)
    if v is None:
        return MISSING
    if v != 0 and (abs(v) < 0.5 * 10**-decimals or abs(v) >= 1e6):
        return f"{v:.2e}"
    return f"{v:,.{decimals}f}"


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    muted: list[bool] = field(default_factory=list)
    """Rows shown subdued (the base model's numbers)."""
    caption: str = ""


@dataclass
class Bullets:
    """A collapsible list (the files a report was built from)."""

    title: str
    items: list[str]


@dataclass
class Lead:
    """A sentence that answers one of the page's questions (the summary's): text, not a note."""

    text: str


@dataclass
class Details:
    """Blocks (tables, notes) behind a title, folded away in HTML until opened."""

    title: str
    blocks: list[Any] = field(default_factory=list)


@dataclass
class Section:
    title: str
    blocks: list[Any] = field(default_factory=list)
    """Tables, Figures and strings (notes)."""


def _clip(text: Any, limit: int = EXAMPLE_CHARS) -> str:
    text = " ".join(str(text if not isinstance(text, list) else " ".join(
        str(m.get("content", "")) for m in text if isinstance(m, dict))).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
