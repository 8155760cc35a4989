"""Preference records in memory: the three categories a triage gives a pair, the record
(:class:`PreferencePair`) and the helpers that give its prompt and responses as plain text.

A record's text is either a string (TRL's standard format) or a list of ``{"role", "content"}``
messages (conversational); :mod:`realign.data.validation` checks what a file holds against this
model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Union

#: A triaged record's category (Alg. 1 lines 3-6; :func:`realign.data.triaged.categorise`): INVERT, the
#: old winner violates the new policy and the loser complies (held swapped); PUNISH, both violate;
#: RETAIN, the old winner still complies.
Category = Literal["INVERT", "PUNISH", "RETAIN"]
INVERT: Category = "INVERT"
PUNISH: Category = "PUNISH"
RETAIN: Category = "RETAIN"
CATEGORIES: tuple[Category, ...] = (INVERT, PUNISH, RETAIN)
#: the conflict records' categories: those Stage 2 scores and Stage 3 weights (:mod:`realign.objective`)
CONFLICT: tuple[Category, ...] = (INVERT, PUNISH)

Message = dict[str, str]
Text = Union[str, list[Message]]


@dataclass
class PreferencePair:
    """One preference pair (x, y_w, y_l), possibly triaged and scored."""

    id: str
    prompt: Text
    chosen: Text
    rejected: Text
    category: Category | None = None
    swapped: bool = False
    verdicts: dict[str, dict] | None = None
    oracle: Text | None = None
    impact: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    corrective: dict[str, Any] | None = None

    @property
    def conversational(self) -> bool:
        return isinstance(self.chosen, list)

    @property
    def y_c(self) -> Text | None:
        """The compliant response a PUNISH pair is trained towards: the oracle's when there is
        one, else the corrective response found without an oracle, else None (dual NPO)."""
        if self.oracle is not None:
            return self.oracle
        return self.corrective["response"] if self.corrective is not None else None

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"id": self.id, "prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}
        if self.category is not None:
            rec["category"] = self.category
            rec["swapped"] = self.swapped
        if self.verdicts is not None:
            rec["verdicts"] = self.verdicts
        if self.oracle is not None:
            rec["oracle"] = self.oracle
        if self.corrective is not None:
            rec["corrective"] = self.corrective
        if self.impact is not None:
            rec["impact"] = self.impact
        if self.meta:
            rec["meta"] = self.meta
        return rec


# --------------------------------------------------------------------------- text helpers


def prompt_text(prompt: Text) -> str:
    """The prompt as plain text for a judge: a string as is; a conversation rendered by turn."""
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1 and prompt[0]["role"] == "user":
        return prompt[0]["content"]
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in prompt)


def response_text(response: Text) -> str:
    """The response as plain text: a string as is; the content of its messages joined."""
    if isinstance(response, str):
        return response
    return "\n\n".join(m["content"] for m in response)


def as_response(text: str, like: Text) -> Text:
    """``text`` in the same format as ``like`` (a string, or one assistant message)."""
    return text if isinstance(like, str) else [{"role": "assistant", "content": text}]

