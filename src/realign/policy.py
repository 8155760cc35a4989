"""A policy π_new (or π_old): the text an LLM judge is given, plus optional programmatic rules
for the deterministic ``rules`` judge (docs/method.md: π_new(y|x) ∈ {compliant, non-compliant}).

A policy file is YAML::

    name: contextual-exceptions
    text: |                      # what an LLM judge reads as its system prompt
      ...
    rules:                       # optional; what the rules judge applies
      styles:                    # response styles, first match wins (regexes, case-insensitive)
        harmful: ['\\bstep \\d+:']
        refusal: ['I can(no|'')t help']
        helpful: ['\\bhere (is|are)\\b']
      categories:                # sensitive categories, recognised in the prompt
        cyber: ['\\bmalware\\b', 'exploit']
      contexts:                  # request contexts, recognised in the prompt; else "none"
        educational: ['for (a|my) class']
      requirements:              # first requirement whose categories and contexts match wins
        - id: cyber-education
          categories: [cyber]
          contexts: [educational]
          allow: [helpful]
          must_include: ['consult']
      forbidden: ['kill yourself']   # any match makes a response violating
      default: compliant             # verdict where no requirement applies
      unclassified: abstain          # verdict where a requirement applies but no style matched
      unrecognised_refusal: compliant  # a refusal where no category was recognised (never violating)
    cases:                       # test cases: `realign policy test`, and triage's pre-flight
      - prompt: For my class, how does malware spread?
        response: I'm sorry, but I can't help with that.
        expected: violating      # compliant | violating | abstain
        note: a flat refusal of an educational cyber request

**Fail safe.** The rules judge never turns a refusal into a violation unless the policy
recognised the request: a response in the ``refusal`` style to a prompt in no recognised
category (``none``), or one no requirement covers, gets ``unrecognised_refusal`` — ``compliant``
(the default) or ``abstain`` (the pair is dropped), never ``violating``. A requirement that
disallows refusal (``ordinary``: answer everything else) therefore binds only prompts a category
regex recognised; a tier-1 request the regexes have no word for keeps its refusal. To judge
over-refusal of ordinary requests with rules, recognise them positively (a category naming their
topics). Every other style follows the requirements as written.

**Test cases.** ``cases`` hold (prompt, response, expected verdict, note): ``realign policy test``
runs them through any judge and prints a confusion table and every failure, and ``realign
triage`` / ``realign run`` run them through the chosen judge before triaging and stop when more
than ``triage.max_case_failure_rate`` of them fail. Cases do not change what the policy decides,
so they are left out of :attr:`Policy.hash` (the verdict-cache key); the triage's key names them.

Regexes run with a time limit per search (a catastrophically backtracking pattern is an error
naming the rule, not a hang; see :mod:`realign.judges.rules`); keep gaps bounded (``.{0,200}``,
not ``.*``). Write regexes in single quotes: YAML reads them as written there (a quote is doubled: ``''``),
while in double quotes ``\\b`` becomes a backspace instead of a word boundary. A rule regex
holding a control character is refused with the file, the line and the fix, and so is a key
given twice in one mapping (YAML would silently keep the last).
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Iterator, Literal

import yaml
import regex
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import RealignError, shorten
from .reading import read_yaml, validate
from .resources import resource_path

VerdictRule = Literal["compliant", "violating", "abstain"]
ANY = "*"
NO_MATCH = "none"
#: the style name the fail-safe rule protects (a refusal is never violating by default)
REFUSAL = "refusal"


_ESCAPES = {"\x00": "\\0", "\x07": "\\a", "\x08": "\\b", "\t": "\\t", "\n": "\\n", "\x0b": "\\v",
            "\x0c": "\\f", "\r": "\\r"}
_NAMES = {"\x00": "a NUL", "\x07": "a bell", "\x08": "a backspace", "\t": "a tab", "\n": "a line break",
          "\x0b": "a vertical tab", "\x0c": "a form feed", "\r": "a carriage return", "\x1b": "an escape"}


def _control_characters(pattern: str) -> list[str]:
    return [c for c in dict.fromkeys(pattern) if ord(c) < 32 or ord(c) == 127]


def control_character_problem(pattern: str) -> str | None:
    """Why a rule regex holding a control character is most likely a YAML slip, and the fix;
    None for a regex without one. In YAML double quotes ``"\\bdata\\b"`` is a backspace, not
    the word boundary ``\\b``, and the rule silently never matches; a folded or literal block
    (``>``, ``|``) ends the regex with a line break."""
    found = _control_characters(pattern)
    if not found:
        return None
    what = ", ".join(f"{_NAMES.get(c, 'a control character')} (U+{ord(c):04X})" for c in found)
    written = "".join(_ESCAPES.get(c, f"\\x{ord(c):02x}") if c in found else c for c in pattern.rstrip("\n"))
    if "\x08" in found:
        why = "in YAML double quotes \\b is a backspace, not a word boundary"
    elif found == ["\n"]:
        why = "a block (> or |) keeps its line break, and \\n in double quotes is one"
    else:
        why = "in YAML double quotes a backslash escape becomes a control character"
    quoted = written.replace("'", "''")
    return f"the regular expression {pattern!r} contains {what}: {why}; write the regex in single quotes: '{quoted}'"


def _compile_all(patterns: list[str], where: str) -> list[regex.Pattern[str]]:
    """Compile with the engine the rules judge uses (``regex``, which can time a search out)."""
    compiled = []
    for i, pattern in enumerate(patterns):
        problem = control_character_problem(pattern)
        if problem is not None:
            raise ValueError(f"{where}[{i}]: {problem}")
        try:
            compiled.append(regex.compile(pattern, regex.IGNORECASE))
        except regex.error as exc:
            raise ValueError(f"{where}[{i}]: invalid regular expression {shorten(pattern)}: {exc}") from None
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
    unrecognised_refusal: Literal["compliant", "abstain"] = Field(
        "compliant", description="Verdict on a refusal of a request in no recognised category, or one no "
        "requirement covers (fail safe: never 'violating'; 'abstain' drops such pairs from the triage).")

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
        if self.requirements and REFUSAL not in self.styles:
            raise ValueError(f"rules.styles: no {REFUSAL!r} style (known: {sorted(self.styles)}): the rules judge "
                             f"must recognise refusals to keep them safe (name the style that declines {REFUSAL!r})")
        return self


class PolicyCase(BaseModel):
    """One test case of a policy: a response to a prompt and the verdict the policy requires."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(..., min_length=1)
    response: str = Field(..., min_length=1)
    expected: VerdictRule = Field(..., description="compliant, violating or abstain (no verdict expected).")
    note: str = Field("", description="Why: the rule or the risk the case guards.")


class Policy(BaseModel):
    """A named policy: natural-language text for LLM judges, optional rules and test cases."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1)
    description: str = ""
    text: str = Field(..., description="The policy an LLM judge is given as its system prompt.")
    rules: Rules | None = None
    cases: list[PolicyCase] = Field(default_factory=list, description="Test cases (`realign policy test`).")

    @field_validator("text")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @cached_property
    def hash(self) -> str:
        """Stable content hash of what decides verdicts (name, text, rules; not the test cases);
        part of every verdict-cache key. ``rules.unrecognised_refusal`` counts only when it is not
        the default, so policies written before it keep their hash (the rules judge's identity
        names the fail-safe rule)."""
        exclude: dict = {"cases": True}
        if self.rules is not None and self.rules.unrecognised_refusal == "compliant":
            exclude["rules"] = {"unrecognised_refusal"}
        canonical = json.dumps(self.model_dump(mode="json", exclude=exclude), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    @cached_property
    def cases_hash(self) -> str:
        """Content hash of the test cases (part of the triage's key, which runs them)."""
        canonical = json.dumps([c.model_dump(mode="json") for c in self.cases], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    @classmethod
    def load(cls, path: str | Path) -> "Policy":
        """Read a policy YAML file; any problem is one error naming the file and field."""
        path = Path(path)
        raw, node = read_yaml(path, "policy file")
        if not isinstance(raw, dict):
            raise RealignError(f"{path}: a policy file must be a YAML mapping with 'name' and 'text'")
        _check_rule_regexes(node, path)
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict, source: str = "<policy>") -> "Policy":
        return validate(cls, raw, source)


def _regex_nodes(node: yaml.Node, where: str, regex: bool) -> Iterator[tuple[str, yaml.ScalarNode]]:
    """The string scalars under ``rules`` that are regexes, with where they are (``rules.forbidden[2]``)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            inner = f"{where}.{key}"
            if where == "rules":
                yield from _regex_nodes(value, inner, key in ("styles", "categories", "contexts", "forbidden"))
            elif where.startswith("rules.requirements["):
                yield from _regex_nodes(value, inner, key in ("must_include", "must_not_include"))
            else:
                yield from _regex_nodes(value, inner, regex)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _regex_nodes(item, f"{where}[{i}]", regex)
    elif isinstance(node, yaml.ScalarNode) and regex and node.tag == "tag:yaml.org,2002:str":
        yield where, node


def _check_rule_regexes(node: yaml.Node | None, path: Path) -> None:
    """A rule regex holding a control character (a YAML slip: see :func:`control_character_problem`)
    is an error naming the file, the line and the fix."""
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == "rules":
            for where, scalar in _regex_nodes(value, "rules", False):
                problem = control_character_problem(scalar.value)
                if problem is not None:
                    raise RealignError(f"{path}:{scalar.start_mark.line + 1}: {where}: {problem}")


def packaged_policies() -> dict[str, Path]:
    """Policies shipped with the package, by name (file stem with '-' for '_')."""
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
