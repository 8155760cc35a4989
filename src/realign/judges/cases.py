"""A policy's test cases run through a judge (``realign policy test``, and the triage's gate).

A policy file may hold ``cases``: a prompt, a response, the verdict the policy requires
(``compliant``, ``violating`` or ``abstain``) and a note (:class:`realign.policy.PolicyCase`).
Running them through a judge answers "does this judge apply this policy as written?" before the
judge decides what a model learns: TRACE trains toward whatever the judge calls compliant.

* :func:`run_cases` — every case's verdict (verdict cache first, so a rerun makes no calls);
* :class:`CaseReport` — the confusion table (expected × got) and every failure;
* :func:`coverage_gaps` — for a rules policy, the requirements and styles no case exercises;
* :func:`gate` — the triage's pre-flight: stop when more than a set share of cases fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ..errors import RealignError, shorten
from ..policy import Policy, PolicyCase
from .base import Judge, JudgeItem, Verdict
from .cache import VerdictCache
from .rules import CompiledRules

OUTCOMES = ("compliant", "violating", "abstain")
#: the triage's default: the largest share of a policy's cases its judge may fail
DEFAULT_MAX_FAILURE_RATE = 0.1


def outcome(verdict: Verdict) -> str:
    """A verdict as one of :data:`OUTCOMES`."""
    if verdict.compliant is None:
        return "abstain"
    return "compliant" if verdict.compliant else "violating"


@dataclass(frozen=True)
class CaseResult:
    index: int
    case: PolicyCase
    got: str
    raw: str

    @property
    def passed(self) -> bool:
        return self.got == self.case.expected

    def describe(self) -> str:
        """One failure as a reader needs it: which case, what was expected, what the judge said."""
        note = f" ({self.case.note})" if self.case.note else ""
        return (f"case {self.index}{note}: expected {self.case.expected}, got {self.got}\n"
                f"    prompt:   {shorten(self.case.prompt, 100)}\n    response: {shorten(self.case.response, 100)}\n"
                f"    judge:    {shorten(self.raw, 160)}")


@dataclass
class CaseReport:
    policy: str
    policy_hash: str
    cases_hash: str
    judge: str
    results: list[CaseResult] = field(default_factory=list)
    judge_calls: int = 0
    cache_hits: int = 0

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    @property
    def failure_rate(self) -> float:
        return len(self.failures) / len(self.results) if self.results else 0.0

    def confusion(self) -> dict[str, dict[str, int]]:
        """``{expected: {got: count}}`` over :data:`OUTCOMES`."""
        table = {e: {g: 0 for g in OUTCOMES} for e in OUTCOMES}
        for r in self.results:
            table[r.case.expected][r.got] += 1
        return table

    def table(self) -> str:
        """The confusion table as aligned text (rows: expected; columns: the judge's verdict)."""
        width = max(len(o) for o in OUTCOMES) + 2
        lines = ["expected \\ judge".ljust(18) + "".join(o.rjust(width) for o in OUTCOMES)]
        for expected, row in self.confusion().items():
            if any(row.values()):
                lines.append(expected.ljust(18) + "".join(str(row[g]).rjust(width) for g in OUTCOMES))
        return "\n".join(lines)

    def headline(self) -> str:
        passed = len(self.results) - len(self.failures)
        return (f"policy {self.policy} ({self.policy_hash}): {passed} of {len(self.results)} cases pass "
                f"under judge {self.judge}")

    def to_dict(self) -> dict:
        return {
            "policy": {"name": self.policy, "hash": self.policy_hash, "cases_hash": self.cases_hash},
            "judge": self.judge, "cases": len(self.results), "failed": len(self.failures),
            "failure_rate": round(self.failure_rate, 4), "confusion": self.confusion(),
            "judge_calls": self.judge_calls, "cache_hits": self.cache_hits,
            "failures": [{"case": r.index, "expected": r.case.expected, "got": r.got, "note": r.case.note,
                          "prompt": r.case.prompt, "response": r.case.response, "raw": r.raw}
                         for r in self.failures],
        }


def run_cases(policy: Policy, judge: Judge, cache: VerdictCache | None = None) -> CaseReport:
    """Judge every case of ``policy`` (cached verdicts first; new ones are cached)."""
    items = [JudgeItem(c.prompt, c.response) for c in policy.cases]
    verdicts: list[Verdict | None] = [None] * len(items)
    report = CaseReport(policy.name, policy.hash, policy.cases_hash, judge.identity)
    if cache is not None:
        for i, v in cache.get_many(judge.identity, policy.hash, items).items():
            verdicts[i] = v
    missing = [i for i, v in enumerate(verdicts) if v is None]
    report.cache_hits = len(items) - len(missing)
    if missing:
        calls = judge.calls
        fresh = judge.judge([items[i] for i in missing], policy)
        report.judge_calls = judge.calls - calls
        for i, verdict in zip(missing, fresh):
            verdicts[i] = verdict
            if cache is not None:
                cache.put(judge.identity, policy.hash, items[i], verdict)
        if cache is not None:
            cache.commit()
    report.results = [CaseResult(i, case, outcome(v), v.raw)
                      for i, (case, v) in enumerate(zip(policy.cases, verdicts))]  # type: ignore[arg-type]
    return report


def coverage_gaps(policy: Policy) -> list[str]:
    """What a rules policy's cases leave untested: each requirement should decide at least one
    case either way it can go (compliant, and violating), and each style should appear in one.
    Read with the rules judge's own classification; empty for a policy without rules."""
    if policy.rules is None:
        return []
    rules = CompiledRules(policy.rules, policy.name)
    seen: set[tuple[str, bool]] = set()
    styles: set[str] = set()
    for case in policy.cases:
        c = rules.classify(case.prompt, case.response)
        styles.add(c.style)
        found = rules.requirement(c.category, c.context)
        if found is not None and case.expected != "abstain":
            index, req, _, _ = found
            seen.add((req.id or f"#{index}", case.expected == "compliant"))
    gaps = []
    for index, req in enumerate(policy.rules.requirements):
        name = req.id or f"#{index}"
        if (name, True) not in seen:
            gaps.append(f"requirement {name}: no case it finds compliant")
        if (name, False) not in seen and set(policy.rules.styles) - set(req.allow):
            gaps.append(f"requirement {name}: no case it finds violating")
    gaps += [f"style {s}: no case's response has it" for s in policy.rules.styles if s not in styles]
    return gaps


def gate(report: CaseReport, max_failure_rate: float, source: str = "triage") -> None:
    """Stop before triage when the judge fails more than ``max_failure_rate`` of the policy's
    cases: a judge that misreads the policy would teach the model the misreading."""
    if report.failure_rate <= max_failure_rate:
        return
    shown = "\n  ".join(r.describe().replace("\n", "\n  ") for r in report.failures[:10])
    more = f"\n  ... and {len(report.failures) - 10} more" if len(report.failures) > 10 else ""
    raise RealignError(
        f"{report.headline()} — {len(report.failures)} failed ({report.failure_rate:.0%}), more than the "
        f"{max_failure_rate:.0%} allowed ({source}.max_case_failure_rate): this judge does not apply the policy as "
        f"its cases require, and TRACE would learn its mistakes. Fix the policy's rules or cases, choose another "
        f"judge, or raise the threshold knowingly.\n  {shown}{more}"
    )

