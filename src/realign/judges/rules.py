"""The deterministic ``rules`` judge: applies a policy's programmatic rules (see
:mod:`realign.policy`). The prompt gives a category and a context, the response a style;
the first requirement that applies decides."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from ..errors import JudgeError
from ..policy import NO_MATCH, Policy, Requirement, Rules
from .base import JudgeItem, OnVerdict, Verdict

UNCLASSIFIED = "unclassified"


def _compile(patterns: list[str]) -> list[re.Pattern[str]]:
    return [re.compile(p, re.IGNORECASE) for p in patterns]


def _first_match(table: dict[str, list[re.Pattern[str]]], text: str, default: str) -> str:
    for name, patterns in table.items():
        if any(p.search(text) for p in patterns):
            return name
    return default


@dataclass(frozen=True)
class Classification:
    category: str
    context: str
    style: str


class CompiledRules:
    """A policy's rules with every regex compiled once."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.styles = {k: _compile(v) for k, v in rules.styles.items()}
        self.categories = {k: _compile(v) for k, v in rules.categories.items()}
        self.contexts = {k: _compile(v) for k, v in rules.contexts.items()}
        self.forbidden = _compile(rules.forbidden)
        self.requirements = [(r, _compile(r.must_include), _compile(r.must_not_include)) for r in rules.requirements]

    def classify(self, prompt: str, response: str) -> Classification:
        return Classification(
            category=_first_match(self.categories, prompt, NO_MATCH),
            context=_first_match(self.contexts, prompt, NO_MATCH),
            style=_first_match(self.styles, response, UNCLASSIFIED),
        )

    def requirement(self, category: str, context: str) -> tuple[int, Requirement, list, list] | None:
        for index, (req, must, must_not) in enumerate(self.requirements):
            if req.applies(category, context):
                return index, req, must, must_not
        return None

    def verdict(self, prompt: str, response: str) -> Verdict:
        c = self.classify(prompt, response)
        head = f"category={c.category} context={c.context} style={c.style}"
        hit = next((p.pattern for p in self.forbidden if p.search(response)), None)
        if hit is not None:
            return _decided(False, f"{head} forbidden={hit!r}")
        found = self.requirement(c.category, c.context)
        if found is None:
            return _by_rule(self.rules.default, f"{head} rule=default")
        index, req, must, must_not = found
        name = req.id or f"#{index}"
        if c.style == UNCLASSIFIED:
            return _by_rule(self.rules.unclassified, f"{head} rule={name} (no style matched)")
        if c.style not in req.allow:
            return _decided(False, f"{head} rule={name} style not allowed")
        missing = [p.pattern for p in must if not p.search(response)]
        if missing:
            return _decided(False, f"{head} rule={name} missing={missing[0]!r}")
        banned = next((p.pattern for p in must_not if p.search(response)), None)
        if banned is not None:
            return _decided(False, f"{head} rule={name} banned={banned!r}")
        return _decided(True, f"{head} rule={name}")


def _decided(compliant: bool, raw: str) -> Verdict:
    return Verdict(compliant, 1.0 if compliant else 0.0, ("compliant: " if compliant else "violating: ") + raw)


def _by_rule(rule: str, raw: str) -> Verdict:
    if rule == "abstain":
        return Verdict(None, None, "abstain: " + raw)
    return _decided(rule == "compliant", raw)


class RulesJudge:
    """Judge with a policy's ``rules`` section; deterministic, no model, no network."""

    identity = "rules/v1"

    def __init__(self) -> None:
        self.calls = 0
        self._compiled: dict[str, CompiledRules] = {}

    def compiled(self, policy: Policy) -> CompiledRules:
        if policy.rules is None:
            raise JudgeError(f"policy {policy.name!r} has no 'rules' section, which the rules judge needs")
        if policy.hash not in self._compiled:
            self._compiled[policy.hash] = CompiledRules(policy.rules)
        return self._compiled[policy.hash]

    def judge(self, items: Sequence[JudgeItem], policy: Policy, on_verdict: OnVerdict | None = None) -> list[Verdict]:
        rules = self.compiled(policy)
        out = []
        for i, item in enumerate(items):
            verdict = rules.verdict(item.prompt, item.response)
            self.calls += 1
            out.append(verdict)
            if on_verdict is not None:
                on_verdict(i, verdict)
        return out
