"""The ``openai`` judge: π_new(y|x) asked of any OpenAI-compatible chat endpoint (OpenAI,
vLLM, Ollama, llama.cpp, ...), as in docs/method.md "Triage judge": the policy as system prompt,
the fenced prompt and response as user message, one output token, "Yes" = violating. The
endpoint is asked through :class:`~.chat_client.ChatClient` (key, concurrency, retries).
"""

from __future__ import annotations

from typing import Sequence

from ..config import JudgeConfig
from ..policy import Policy
from .async_calls import fan_out_sync
from .base import JudgeItem, OnVerdict, Verdict
from .chat_client import TOP_LOGPROBS, ChatClient
from .prompting import PROMPT_FORMAT_VERSION, answer_share, judge_messages, parse_answer

__all__ = ["JUDGE_MAX_TOKENS", "OpenAIJudge"]

JUDGE_MAX_TOKENS = 1
"""Output tokens asked of the judge: the answer is one word (docs/method.md, "Triage judge": one output token)."""


class OpenAIJudge:
    """π_new(y|x) from an OpenAI-compatible chat model (docs/method.md Stage 1, "Triage judge").

    ``identity`` is ``openai/<model>/<prompt format version>/endpoint-<hash>``: it keys the
    verdict cache, so a change of model, endpoint or prompt wording never reuses old verdicts. ``calls`` counts HTTP
    requests made (retries included). Identical items within one call are judged once.
    """

    def __init__(self, config: JudgeConfig) -> None:
        self.config = config
        self.client = ChatClient(config, role="judge")
        self.identity = f"openai/{config.model}/{PROMPT_FORMAT_VERSION}/{self.client.endpoint_id}"
        self.endpoint = self.client.endpoint  #: as outputs name it: no credentials, no query

    def __repr__(self) -> str:
        return f"OpenAIJudge(identity={self.identity!r}, endpoint={self.client.endpoint!r})"

    @property
    def calls(self) -> int:
        return self.client.calls

    async def judge_one(self, item: JudgeItem, policy: Policy) -> Verdict:
        """One verdict: "No" -> compliant, "Yes" -> violating, anything else -> abstain (None)."""
        reply = await self.client.chat(
            judge_messages(policy, item),
            max_tokens=JUDGE_MAX_TOKENS,
            temperature=0.0,
            logprobs=self.config.logprobs,
            top_logprobs=TOP_LOGPROBS,
        )
        p = answer_share(reply.top_logprobs, "no", "yes") if reply.top_logprobs else None
        return Verdict(compliant=parse_answer(reply.text), p_compliant=p, raw=reply.text)

    def judge(self, items: Sequence[JudgeItem], policy: Policy, on_verdict: OnVerdict | None = None) -> list[Verdict]:
        """One verdict per item, in order; ``on_verdict(i, v)`` is called as each completes.

        Synchronous (runs its own event loop, also inside a notebook's); Ctrl-C cancels the
        requests in flight and raises KeyboardInterrupt. Raises JudgeError when the endpoint
        cannot be used. The HTTP connections are closed when done.
        """
        # More workers than request slots, so one backing off does not idle a slot.
        return fan_out_sync(items, lambda item: self.judge_one(item, policy), 4 * self.config.concurrency, on_verdict,
                            self.client)
