"""``realign data``: preference data prepared from public datasets (``realign data pku``).
Registered on the ``realign`` app by :mod:`realign.cli`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..data import write_pairs
from ..runs.files import check_output_paths
from .options import HELP


data_app = typer.Typer(help="Prepare preference data from public datasets.", no_args_is_help=True, **HELP)


@data_app.command("pku")
def data_pku(
    out: Path = typer.Option(..., help="Pairs (JSONL, TRL standard format)."),
    split: str = typer.Option("train", help="Dataset split."),
    source: Optional[str] = typer.Option(None, help="Local copy (folder, parquet, JSON/JSONL); default: the hub."),
) -> None:
    """PKU-SafeRLHF -> pairs, prepared as the reference code does (safer response chosen)."""
    from ..data.pku import pku_pairs

    check_output_paths({"--source": source}, {"--out": out})
    pairs, counts = pku_pairs(source, split)
    write_pairs(out, pairs)
    typer.echo(
        f"{len(pairs)} pairs from {counts['rows']} rows (one safe {counts['one_safe']}, both safe {counts['both_safe']},"
        f" both unsafe {counts['both_unsafe']}, dropped without safer_response_id {counts['dropped_no_safer_id']}) -> {out}"
    )
