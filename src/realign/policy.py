"""A policy π_new (or π_old): the text an LLM judge is given, plus optional programmatic rules
for the deterministic ``rules`` judge (METHOD.md: π_new(y|x) ∈ {compliant, non-compliant}).

A policy file is YAML::

    name: contextual-exceptions
    text: |                      # what an LLM judge reads as its system prompt
      ...
    rules:                       # optional; what the rules judge applies
      styles:                    # response styles, first match wins (regexes, case-insensitive)
        harmful: ["step \\d+:"]
        refusal: ["I can(no|')t help"]
      categories:                # sensitive categories, recognised in the prompt
        cyber: ["malware", "exploit"]
      contexts:                  # request contexts, recognised in the prompt; else "none"
        educational: ["for (a|my) class"]
      requirements:              # first requirement whose categories and contexts match wins
        - id: cyber-education
          categories: [cyber]
          contexts: [educational]
          allow: [helpful]
          must_include: ["consult"]
      forbidden: ["kill yourself"]   # any match makes a response violating
      default: compliant             # verdict where no requirement applies
      unclassified: abstain          # verdict where a requirement applies but no style matched
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import RealignError

VerdictRule = Literal["compliant", "violating", "abstain"]
ANY = "*"
NO_MATCH = "none"


def _compile_all(patterns: list[str], where: str) -> list[re.Pattern[str]]:
    compiled = []
    for i, pattern in enumerate(patterns):
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            raise ValueError(f"{where}[{i}]: invalid regular expression {pattern!r}: {exc}") from None
    return compiled


class Requirement(BaseModel):
    """What a response must be for prompts of some categories in some contexts."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="Name shown in verdicts; defaults to the position.")
    categories: list[str] = Field(default_factory=lambda: [ANY], description="Categories, or '*'.")
    contexts: list[str] = Field(default_factory=lambda: [ANY], description="Contexts, or '*'.")
    allow: list[str] = Field(..., min_length=1, description="Response styles that comply.")
    must_include: list[str] = Field(
        default_factory=list, description="Regexes every compliant response must match (mandatory elements)."
    )
    must_not_include: list[str] = Field(default_factory=list, description="Regexes no compliant response may match.")

    def applies(self, category: str, context: str) -> bool:
        return (ANY in self.categories or category in self.categories) and (
            ANY in self.contexts or context in self.contexts
        )


class Rules(BaseModel):
    """Programmatic rules for the deterministic ``rules`` judge."""

    model_config = ConfigDict(extra="forbid")

    styles: dict[str, list[str]] = Field(
        default_factory=dict, description="Response style -> regexes; the first style with a match wins."
    )
    categories: dict[str, list[str]] = Field(
        default_factory=dict, description="Sensitive category -> regexes matched on the prompt."
    )
    contexts: dict[str, list[str]] = Field(
        default_factory=dict, description="Request context -> regexes matched on the prompt; else 'none'."
    )
    requirements: list[Requirement] = Field(default_factory=list)
    forbidden: list[str] = Field(default_factory=list, description="Regexes that make any response violating.")
    default: VerdictRule = Field("compliant", description="Verdict where no requirement applies.")
    unclassified: VerdictRule = Field(
        "abstain", description="Verdict where a requirement applies but the response matches no style."
    )

    @model_validator(mode="after")
    def _check(self) -> "Rules":
        for table in ("styles", "categories", "contexts"):
            for name, patterns in getattr(self, table).items():
                _compile_all(patterns, f"rules.{table}.{name}")
        _compile_all(self.forbidden, "rules.forbidden")
        for i, req in enumerate(self.requirements):
            where = f"rules.requirements[{i}]"
            for style in req.allow:
                if style not in self.styles:
                    raise ValueError(f"{where}.allow: unknown style {style!r} (known: {sorted(self.styles)})")
            for cat in req.categories:
                if cat not in (ANY, NO_MATCH) and cat not in self.categories:
                    raise ValueError(f"{where}.categories: unknown category {cat!r} (known: {sorted(self.categories)})")
            for ctx in req.contexts:
                if ctx not in (ANY, NO_MATCH) and ctx not in self.contexts:
                    raise ValueError(f"{where}.contexts: unknown context {ctx!r} (known: {sorted(self.contexts)})")
            _compile_all(req.must_include, f"{where}.must_include")
            _compile_all(req.must_not_include, f"{where}.must_not_include")
        return self


class Policy(BaseModel):
    """A named policy: natural-language text for LLM judges and optional rules."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1)
    description: str = ""
    text: str = Field(..., description="The policy an LLM judge is given as its system prompt.")
    rules: Rules | None = None

    @field_validator("text")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @cached_property
    def hash(self) -> str:
        """Stable content hash; part of every verdict-cache key."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    @classmethod
    def load(cls, path: str | Path) -> "Policy":
        """Read a policy YAML file; any problem is one error naming the file and field."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RealignError(f"{path}: policy file not found") from None
        except UnicodeDecodeError as exc:
            raise RealignError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise RealignError(f"{path}{where}: invalid YAML: {problem}") from None
        if not isinstance(raw, dict):
            raise RealignError(f"{path}: a policy file must be a YAML mapping with 'name' and 'text'")
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict, source: str = "<policy>") -> "Policy":
        from .config import validate

        return validate(cls, raw, source)


def packaged_policies() -> dict[str, Path]:
    """Policies shipped with the package, by name (file stem with '-' for '_')."""
    from .resources import resource_path

    found: dict[str, Path] = {}
    for folder in ("policies", "synth"):
        for path in sorted(resource_path(folder).glob("*.yaml")):
            found.setdefault(path.stem.replace("_", "-"), path)
    return found


def resolve_policy(name_or_path: str | Path) -> Path:
    """A policy file path, or the path of a packaged policy given by name."""
    path = Path(name_or_path)
    if path.exists():
        return path
    known = packaged_policies()
    key = str(name_or_path).replace("_", "-")
    if key in known:
        return known[key]
    raise RealignError(
        f"{name_or_path}: policy file not found (packaged policies: {', '.join(sorted(known)) or 'none'})"
    )
