"""The judge protocol: π_new(y|x) for a batch of (prompt, response) pairs (docs/method.md Stage 1)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Protocol, Sequence, runtime_checkable

from ..policy import Policy


@dataclass(frozen=True)
class JudgeItem:
    """One response to judge, as plain text (conversations are rendered by the data layer)."""

    prompt: str
    response: str


@dataclass(frozen=True)
class Verdict:
    """A judge's decision on one response.

    ``compliant`` is None when the judge abstained or its answer could not be parsed; what
    happens then is the triage's ``on_unparseable`` rule, never a silent default.
    """

    compliant: bool | None
    p_compliant: float | None = None
    raw: str = ""

    @property
    def abstained(self) -> bool:
        return self.compliant is None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Verdict":
        return cls(compliant=d.get("compliant"), p_compliant=d.get("p_compliant"), raw=d.get("raw", ""))


OnVerdict = Callable[[int, Verdict], None]


@runtime_checkable
class Judge(Protocol):
    """Anything that decides compliance with a policy.

    ``identity`` names the backend, model and prompt format; it is part of the verdict-cache
    key, so two judges with the same identity must give the same verdicts.
    ``calls`` counts requests actually made to the backend (retries included).
    A judge that asks a hosted endpoint may also have ``endpoint``: its URL as outputs name it,
    without credentials or query (:func:`realign.judges.endpoint_named`).
    """

    identity: str
    calls: int

    def judge(
        self, items: Sequence[JudgeItem], policy: Policy, on_verdict: OnVerdict | None = None
    ) -> list[Verdict]:
        """Return one verdict per item, in order; call ``on_verdict(i, v)`` as each is known."""
        ...
