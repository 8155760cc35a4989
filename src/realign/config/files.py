"""Config files: a YAML config read with its paths taken from the file's folder
(:func:`load_yaml`, :func:`config_paths`), and a config as the plain data written beside a
stage's outputs (:func:`resolved`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..errors import RealignError
from ..reading import read_yaml

#: config keys that name files the run writes: relative ones are taken from the config's folder
OUTPUT_KEYS = frozenset({"out", "cache", "gold_out", "naive_out", "review_out"})
#: config keys that name files or folders the run reads (some may also be a hub id, a
#: ``hf:`` dataset or a packaged policy name)
INPUT_KEYS = frozenset({"data", "gold_data", "model", "adapter", "reference", "policy", "old_policy", "prompts",
                        "attacks", "attack_templates", "text", "api_key_file", "labels"})
#: sections whose keys are relocated too (a run config's stage sections, judge and oracle)
PATH_SECTIONS = frozenset({"judge", "second_judge", "oracle", "triage", "score", "train", "eval"})


def _relocate(value: str, folder: Path, output: bool) -> str:
    if value.startswith("hf:"):
        return value
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    here = folder / path
    if output or here.exists():
        return str(here)
    return str(path)  # a hub id, a packaged policy name, or a path from the working directory


def config_paths(raw: dict[str, Any], folder: str | Path) -> dict[str, Any]:
    """``raw`` (a config read from a file in ``folder``) with its paths resolved: ``~`` expanded
    everywhere; a relative output path (``out``, ``cache``, ``gold_out``, ``naive_out``) taken
    from ``folder``; a relative input path (``data``, ``model``, ``policy``, ``prompts``, ...)
    taken from ``folder`` when it exists there, else left as written (a hub id, a packaged
    policy name, or a path from the working directory). Flags on the command line stay
    relative to the working directory."""
    folder = Path(folder)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and key in PATH_SECTIONS:
            out[key] = config_paths(value, folder)
        elif isinstance(value, str) and value and (key in OUTPUT_KEYS or key in INPUT_KEYS):
            out[key] = _relocate(value, folder, key in OUTPUT_KEYS)
        else:
            out[key] = value
    return out


def load_yaml(path: str | Path, *, relative: bool = True) -> dict[str, Any]:
    """A YAML config file (a mapping), read with :func:`read_yaml`; with ``relative`` its paths
    resolved against the file's folder (:func:`config_paths`)."""
    path = Path(path)
    raw, _ = read_yaml(path)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RealignError(f"{path}: expected a YAML mapping at the top level")
    return config_paths(raw, path.parent) if relative else raw


def resolved(config: BaseModel) -> dict[str, Any]:
    """The config as plain data, for writing beside outputs (no secrets are ever in a config)."""
    return config.model_dump(mode="json")
