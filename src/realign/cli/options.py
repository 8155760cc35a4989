"""What the ``realign`` commands share: the help settings, ``--judge`` / ``--oracle`` read as a
backend name or a YAML file, flags laid over a YAML config, flags whose help comes from the
config model's field, and ``-q``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from ..config import load_yaml
from ..errors import RealignError
from ..judges.registry import backend_names

#: ``--judge``'s help: the judge backends (:mod:`..judges.registry`) or a judge YAML file
JUDGE_HELP = f"Judge: {', '.join(backend_names('pointwise'))}, or a judge YAML file."

#: plain help (rich's boxed tables cut long option names at 80 columns) with every default shown
HELP = {"rich_markup_mode": None, "context_settings": {"show_default": True, "max_content_width": 100}}


def _judge_section(judge: str | None, flag: str = "--judge") -> dict[str, Any]:
    """``--judge`` (or ``flag``) is a backend name (rules, openai, hf: :mod:`..judges.registry`) or a judge YAML file."""
    if judge is None:
        return {}
    if judge in backend_names("pointwise"):
        return {"backend": judge}
    if Path(judge).suffix in (".yaml", ".yml"):
        return load_yaml(judge)
    raise RealignError(f"{flag}: expected {', '.join(backend_names('pointwise'))} or a judge .yaml file, got {judge!r}")


def _oracle_section(oracle: str | None) -> dict[str, Any] | None:
    if oracle is None:
        return None
    if oracle in backend_names("oracle"):
        return {"backend": oracle}
    if Path(oracle).suffix in (".yaml", ".yml"):
        return load_yaml(oracle)
    raise RealignError(f"--oracle: expected {', '.join(backend_names('oracle'))} or an oracle .yaml file, got {oracle!r}")


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict):
            merged = _merge(out.get(key) if isinstance(out.get(key), dict) else {}, value)
            if merged:
                out[key] = merged
        else:
            out[key] = value
    return out


def _silence_libraries(quiet: bool) -> bool:
    """``-q`` also silences the progress bars of the libraries underneath: transformers' (weight
    loading) and datasets' ("Generating train split" when data is read through it)."""
    if quiet:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        if "datasets" in sys.modules:
            sys.modules["datasets"].disable_progress_bars()
        else:  # datasets reads its switch when first imported, which no command does before this
            os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    return quiet


QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars.", callback=_silence_libraries)


def _flag(model, field: str, *decls: str):
    """A flag whose help text and shown default come from the config model's field, so the
    flags, the YAML keys and docs/configuration.md share one description. The flag's own
    default is None: unset flags leave the YAML config's (or the model's) value in place."""
    info = model.model_fields[field]
    text = info.description or ""
    if not info.is_required():
        default = info.get_default(call_default_factory=True)
        if default not in (None, "", [], {}) and not hasattr(default, "model_fields"):
            text += f" [default: {default}]"
    return typer.Option(None, *decls, help=text, show_default=False)
