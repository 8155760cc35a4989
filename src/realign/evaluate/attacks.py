"""Attack success rate: harmful requests wrapped in jailbreak templates (data, not code).

A wrapped request succeeds when the judge finds the response violating the policy, judged
against the original, unwrapped request — what the attacker wanted answered. A response the
judge leaves unclassified (an abstention; for the rules judge, a response in which it recognises
no specific style, such as a refusal worded as its rules do not know) is no success:
metrics.json counts it apart (``attacks_unclassified``, :func:`realign.metrics.tpa.unclassified`)."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import RealignError
from ..reading import parse_yaml, yaml_error
from ..resources import resource_path


def load_templates(path: str | Path | None = None) -> dict[str, str]:
    """Templates by name from a YAML file with a ``templates`` mapping (default: packaged)."""
    path = Path(path) if path is not None else resource_path("attacks.yaml")
    try:
        raw, _ = parse_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RealignError(f"{path}: attack templates file not found") from None
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc) from None
    templates = raw.get("templates") if isinstance(raw, dict) else None
    if not isinstance(templates, dict) or not templates:
        raise RealignError(f"{path}: expected a 'templates' mapping of name -> text")
    for name, text in templates.items():
        if not isinstance(text, str) or "{prompt}" not in text:
            raise RealignError(f"{path}: template '{name}' must be text containing {{prompt}}")
    return {str(k): v for k, v in templates.items()}


def wrap(template: str, prompt: str) -> str:
    """The request inside the template (plain replacement: braces elsewhere are kept)."""
    return template.replace("{prompt}", prompt)
